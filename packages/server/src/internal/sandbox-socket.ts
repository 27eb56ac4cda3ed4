import { ErrorCode, ServiceError } from '@warren/protocol';
import type { Driver } from '../runtime/driver.ts';
import type { Store } from '../store/store.ts';

/**
 * The agent socket of a running sandbox, or the error its traffic is
 * answered with: 409 paused/creating/stopped, 404 for anything else
 * (deleted, failed, pooled, unknown).
 */
export function agentSocketOf(
  deps: { store: Store; driver: Driver },
  sandboxId: string,
): { ok: true; socketPath: string } | { ok: false; error: ServiceError } {
  const sandbox = deps.store.getSandbox(sandboxId);
  switch (sandbox?.status) {
    case 'running':
      return { ok: true, socketPath: deps.driver.agentSocket(sandboxId) };
    case 'paused':
      return { ok: false, error: new ServiceError(ErrorCode.SANDBOX_PAUSED, `Sandbox ${sandboxId} is paused`) };
    case 'creating':
      return { ok: false, error: new ServiceError(ErrorCode.SANDBOX_CREATING, `Sandbox ${sandboxId} is starting`) };
    case 'stopped':
      return { ok: false, error: new ServiceError(ErrorCode.SANDBOX_STOPPED, `Sandbox ${sandboxId} is stopped`) };
    default:
      return { ok: false, error: new ServiceError(ErrorCode.SANDBOX_NOT_FOUND, `Sandbox ${sandboxId} not found`) };
  }
}
