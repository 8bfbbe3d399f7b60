// Reading a live stream in a test: the text so far, and a wait until it holds a frame.

/** Wraps a streaming fetch answer. `until` reads on until `needle` appears (or the stream ends). */
export function sseReader(res: Response): {
  until(needle: string): Promise<void>;
  readonly text: string;
} {
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  let text = '';
  return {
    async until(needle) {
      while (!text.includes(needle)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${needle}: ${text}`);
        text += Buffer.from(value).toString('utf8');
      }
    },
    get text() {
      return text;
    },
  };
}
