export type { ClientConfig, ConfigFile } from './config.ts';
export { configFilePath, readConfigFile, resolveConfig } from './config.ts';
export { renderCLIReference } from './docs.ts';
export {
  formatBytes,
  formatDuration,
  parseCopyOperand,
  parseDuration,
  parseDurationSeconds,
  parseKeyValue,
} from './parse.ts';
export { buildProgram, VERSION } from './program.ts';
export type { TemplateFile } from './template-file.ts';
export { parseTemplateFile, templateFileSchema } from './template-file.ts';
