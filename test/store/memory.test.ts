import { MemoryStore } from '../../src/store/memory/index.js';
import { runStoreConformance } from './conformance.js';

runStoreConformance('memory', { create: async () => new MemoryStore() });
