import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ScriptedResponse {
  status: number;
  headers?: Record<string, string>;
  /** Objects are sent as JSON; strings as they are. */
  body?: unknown;
  /** Hold the response this long (to outlast a client timeout). */
  delayMs?: number;
  /** Send the status and headers and the start of the body, then never finish it. */
  stallBody?: boolean;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  rawBody: string;
  /** The parsed JSON body, or undefined when it was not JSON. */
  body: unknown;
  /** The rail's own clock when the request arrived (Date.now()). */
  receivedAt: number;
  /** The status it was answered with (set when the answer is sent). */
  status?: number;
}

export interface RailServer {
  /** The endpoint to configure as an http rail's `url`. */
  url: string;
  /** Every request received, in arrival order. */
  requests: RecordedRequest[];
  /** The most client connections it has had open at once. */
  mostConnectionsAtOnce(): number;
  /** Queue responses for the next calls, in order (used before per-key and default answers). */
  respondNext(...responses: ScriptedResponse[]): void;
  /** Answer every request carrying this idempotency key with `response`. */
  respondToKey(idempotencyKey: string, response: ScriptedResponse): void;
  /** The answer when nothing else is scripted; 200 `{ reference: "ref-<n>" }` to start with. */
  setDefault(response: ScriptedResponse): void;
  /** Decide each answer not scripted by respondNext (undefined: per-key, then default). */
  respondWith(
    decide: ((request: RecordedRequest) => ScriptedResponse | undefined) | undefined,
  ): void;
  close(): Promise<void>;
}

/** A scriptable loopback rail: real HTTP, so the http adapter is tested with Node's own fetch. */
export async function startRailServer(
  options: { idempotencyHeader?: string } = {},
): Promise<RailServer> {
  const keyHeader = (options.idempotencyHeader ?? 'Idempotency-Key').toLowerCase();
  const requests: RecordedRequest[] = [];
  const queue: ScriptedResponse[] = [];
  const byKey = new Map<string, ScriptedResponse>();
  let fallback: ScriptedResponse | undefined;
  let decider: ((request: RecordedRequest) => ScriptedResponse | undefined) | undefined;
  const timers = new Set<NodeJS.Timeout>();

  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const recorded: RecordedRequest = {
        method: request.method ?? '',
        path: request.url ?? '',
        headers: request.headers,
        rawBody,
        body: parseJson(rawBody),
        receivedAt: Date.now(),
      };
      requests.push(recorded);
      const key = request.headers[keyHeader];
      const scripted = queue.shift() ??
        decider?.(recorded) ??
        (typeof key === 'string' ? byKey.get(key) : undefined) ??
        fallback ?? { status: 200, body: { reference: `ref-${requests.length}` } };
      const send = () => {
        const isText = typeof scripted.body === 'string';
        const body =
          scripted.body === undefined
            ? ''
            : isText
              ? String(scripted.body)
              : JSON.stringify(scripted.body);
        const contentType = isText ? 'text/plain' : 'application/json';
        recorded.status = scripted.status;
        response.writeHead(scripted.status, { 'content-type': contentType, ...scripted.headers });
        if (scripted.stallBody) response.write(body.slice(0, Math.ceil(body.length / 2)));
        else response.end(body);
      };
      if (!scripted.delayMs) return send();
      const timer = setTimeout(() => {
        timers.delete(timer);
        send();
      }, scripted.delayMs);
      timers.add(timer);
    });
  });

  let connections = 0;
  let mostConnections = 0;
  server.on('connection', (socket) => {
    connections += 1;
    mostConnections = Math.max(mostConnections, connections);
    socket.on('close', () => (connections -= 1));
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/dispatch`,
    requests,
    mostConnectionsAtOnce: () => mostConnections,
    respondNext: (...responses) => queue.push(...responses),
    respondToKey: (key, response) => byKey.set(key, response),
    setDefault: (response) => {
      fallback = response;
    },
    respondWith: (decide) => {
      decider = decide;
    },
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A loopback URL nothing listens on: the port was bound, then released. */
export async function closedPortUrl(): Promise<string> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/dispatch`;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
