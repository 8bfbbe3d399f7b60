/**
 * @module store/hll — a HyperLogLog of Redis's precision (2^14 six-bit registers, 0.81% standard
 * error), for the stores that have no PFADD of their own (memory, SQLite, PostgreSQL). Elements
 * are visitor hashes (hex, at least 16 digits): already uniformly random, so their first 64 bits
 * are the hash. Redis hashes them again with its own function, so register contents differ
 * between stores while estimates agree within the error. Estimated with Ertl's improved raw
 * estimator (2017), the one Redis uses since 5.0.
 */

/** Register index bits. */
const P = 14;
/** Registers. */
const M = 1 << P;
/** Bits left for the rank: 64 - P. */
const Q = 64 - P;
/** Below this many non-empty registers the encoding is sparse: 3 bytes per register. */
const SPARSE_MAX = 3000;

const SPARSE = 0;
const DENSE = 1;

/** The registers of one HyperLogLog; `add` returns true when one of them grew. */
export class Hll {
  readonly registers: Uint8Array;

  constructor(registers?: Uint8Array) {
    this.registers = registers ?? new Uint8Array(M);
  }

  /** Adds a hex hash; true when the estimate may have changed. */
  add(hash: string): boolean {
    const high = Number.parseInt(hash.slice(0, 8), 16);
    const low = Number.parseInt(hash.slice(8, 16), 16);
    if (!Number.isFinite(high) || !Number.isFinite(low) || hash.length < 16) {
      throw new RangeError('a visitor hash is at least 16 hex digits');
    }
    const index = high >>> (32 - P);
    // The Q bits after the index: (32 - P) from `high`, then 32 from `low`.
    const rest = high & ((1 << (32 - P)) - 1);
    let rank: number;
    if (rest !== 0) rank = Math.clz32(rest) - P + 1;
    else if (low !== 0) rank = 32 - P + Math.clz32(low) + 1;
    else rank = Q + 1;
    if (rank <= (this.registers[index] as number)) return false;
    this.registers[index] = rank;
    return true;
  }

  /** Takes the larger register of each pair: the union of two sets. */
  merge(other: Hll): boolean {
    let grew = false;
    for (let i = 0; i < M; i++) {
      const r = other.registers[i] as number;
      if (r > (this.registers[i] as number)) {
        this.registers[i] = r;
        grew = true;
      }
    }
    return grew;
  }

  /** The cardinality estimate, rounded. */
  count(): number {
    const histogram = new Float64Array(Q + 2);
    for (let i = 0; i < M; i++) (histogram[this.registers[i] as number] as number)++;
    let z = M * tau(1 - (histogram[Q + 1] as number) / M);
    for (let k = Q; k >= 1; k--) z = 0.5 * (z + (histogram[k] as number));
    z += M * sigma((histogram[0] as number) / M);
    return Math.round((M * M) / (2 * Math.LN2 * z));
  }

  /** Bytes for a store: sparse (index, rank) triples while few registers are set, else dense. */
  encode(): Buffer {
    let set = 0;
    for (let i = 0; i < M; i++) if (this.registers[i] !== 0) set++;
    if (set > SPARSE_MAX) return Buffer.concat([Buffer.from([DENSE]), this.registers]);
    const out = Buffer.alloc(1 + 3 * set);
    out[0] = SPARSE;
    let at = 1;
    for (let i = 0; i < M; i++) {
      const r = this.registers[i] as number;
      if (r === 0) continue;
      out.writeUInt16BE(i, at);
      out[at + 2] = r;
      at += 3;
    }
    return out;
  }

  static decode(bytes: Uint8Array | null | undefined): Hll {
    const hll = new Hll();
    if (bytes === null || bytes === undefined || bytes.length === 0) return hll;
    if (bytes[0] === DENSE && bytes.length === 1 + M) {
      hll.registers.set(bytes.subarray(1));
      return hll;
    }
    if (bytes[0] !== SPARSE || (bytes.length - 1) % 3 !== 0) {
      throw new Error('not an encoded HyperLogLog');
    }
    const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let at = 1; at < bytes.length; at += 3) {
      hll.registers[view.readUInt16BE(at) & (M - 1)] = view[at + 2] as number;
    }
    return hll;
  }
}

/** Ertl's sigma: the correction for empty registers. */
function sigma(x: number): number {
  if (x === 1) return Number.POSITIVE_INFINITY;
  let y = 1;
  let z = x;
  for (;;) {
    x *= x;
    const before = z;
    z += x * y;
    y += y;
    if (z === before) return z;
  }
}

/** Ertl's tau: the correction for saturated registers. */
function tau(x: number): number {
  if (x === 0 || x === 1) return 0;
  let y = 1;
  let z = 1 - x;
  for (;;) {
    x = Math.sqrt(x);
    const before = z;
    y *= 0.5;
    z -= (1 - x) ** 2 * y;
    if (z === before) return z / 3;
  }
}
