export { parseDuration } from './parse.ts';
