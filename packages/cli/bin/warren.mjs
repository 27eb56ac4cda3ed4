#!/usr/bin/env node
// Runs the TypeScript sources through tsx, resolved from this file (any working directory works).
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
