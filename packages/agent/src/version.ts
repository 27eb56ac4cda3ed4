/** Name the agent reports in `/health` and `/info`. */
export const AGENT_NAME = 'warren-agent';

/** Version the agent reports in `/health` and `/info`. */
export const AGENT_VERSION = '0.1.0';
