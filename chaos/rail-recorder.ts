import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One delivery as the rail saw it. */
export interface Delivery {
  idempotencyKey: string;
  /** The rail's decision, taken when the request arrived (a real rail pays on receipt). */
  status: number;
  /** The reference issued with a 2xx; null otherwise. */
  reference: string | null;
  receivedAt: number;
  /** False when the client was gone before the answer could be written (a killed worker). */
  answered: boolean;
}

export interface RailRecorder {
  url: string;
  deliveries: Delivery[];
  /** Holds every answer until `ms` from now (the hanging rail); decisions are still taken. */
  hang(ms: number): void;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 256 * 1024;

/**
 * The loopback rail of a chaos run: answers 200 `{ reference }` with a reference unique per
 * delivery, or a 5xx for a share of deliveries, and records every delivery and whether its
 * answer reached the client. It deliberately does not de-duplicate by key, so the verifier
 * sees every acceptance a redelivery would cause at a rail without idempotency.
 */
export async function startRailRecorder(options: {
  /** Share of deliveries answered 5xx (half 503 with Retry-After: 1, half 500). */
  serverErrorRate: number;
  random: () => number;
}): Promise<RailRecorder> {
  const deliveries: Delivery[] = [];
  let heldUntil = 0;
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer((request, response) => {
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) request.destroy();
    });
    request.on('error', () => undefined);
    response.on('error', () => undefined);
    request.on('end', () => {
      const key = request.headers['idempotency-key'];
      const roll = options.random();
      const status =
        typeof key !== 'string'
          ? 400
          : roll < options.serverErrorRate / 2
            ? 503
            : roll < options.serverErrorRate
              ? 500
              : 200;
      const reference = status === 200 ? `chaos-ref-${deliveries.length + 1}` : null;
      const delivery: Delivery = {
        idempotencyKey: typeof key === 'string' ? key : '',
        status,
        reference,
        receivedAt: Date.now(),
        answered: false,
      };
      deliveries.push(delivery);
      const send = () => {
        if (response.destroyed || request.socket.destroyed) return;
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (status === 503) headers['retry-after'] = '1';
        response.writeHead(status, headers);
        response.end(JSON.stringify(reference ? { reference } : { error: 'unavailable' }), () => {
          delivery.answered = true;
        });
      };
      const wait = heldUntil - Date.now();
      if (wait <= 0) return send();
      const timer = setTimeout(() => {
        timers.delete(timer);
        send();
      }, wait);
      timers.add(timer);
    });
  });
  server.on('clientError', (_error, socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/dispatch`,
    deliveries,
    hang(ms) {
      heldUntil = Date.now() + ms;
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
