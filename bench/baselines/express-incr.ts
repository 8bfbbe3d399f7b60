/** @module bench/baselines/express-incr — the usual way: Express 5, one Redis INCRBY per request. */
import express from 'express';
import { Redis } from 'ioredis';

const port = Number(process.env.PORT ?? 3000);
const prefix = process.env.KEY_PREFIX ?? 'baseline:express:';
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

const app = express();
app.use(express.json());

// Same contract as Tally's route: validate, add, answer the new value.
app.post('/api/v1/counters/:name/increment', async (req, res) => {
  const name = req.params.name;
  const by: unknown = req.body?.by ?? 1;
  if (!NAME_RE.test(name) || !Number.isSafeInteger(by)) {
    res.status(400).json({ error: { code: 'BAD_REQUEST', message: 'bad name or by' } });
    return;
  }
  const value = await redis.incrby(prefix + name, by as number);
  res.status(200).json({ name, value });
});

app.listen(port, '127.0.0.1', () => {
  process.stdout.write(`express-incr listening on http://127.0.0.1:${port}\n`);
});
process.once('SIGTERM', () => process.exit(0));
