# syntax=docker/dockerfile:1
#
# gatehouse container image — see docs/deployment.md.
#
#   docker build -t gatehouse .
#   docker run --rm -p 8080:8080 \
#     -v "$PWD/gatehouse.json:/etc/gatehouse/gatehouse.json:ro" \
#     -e OIDC_CLIENT_SECRET -e GATEHOUSE_KEY gatehouse
#
# The config must listen on all interfaces inside the container ("listen": { "host": "0.0.0.0" })
# or the published port is unreachable. Pass secrets as environment variables and reference them
# as ${NAME} in the config.

ARG NODE_MAJOR=24

# ---------------------------------------------------------------------------------------------
# Build stage: full Node 24 image (npm, compilers), compiles TypeScript to dist/.
# ---------------------------------------------------------------------------------------------
FROM node:${NODE_MAJOR} AS build
WORKDIR /src
ENV npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false

# Dependencies first, so this layer is reused while only src/ changes. `npm ci` also runs the
# install script of the pinned `node` devDependency, which npm scripts (`npm run build`) use.
COPY package.json package-lock.json ./
RUN npm ci

COPY tsconfig.base.json tsconfig.json tsconfig.client.json ./
COPY src ./src
RUN npm run build

# Runtime dependencies only. The session-store drivers `ioredis` (redis:// / rediss://) and `pg`
# (postgres://) are optional peer dependencies of gatehouse and therefore only devDependencies of
# this repo, so `npm prune --omit=dev` removes them. Users of the image cannot easily add packages
# to it, so both drivers are installed here explicitly, at the versions locked in
# package-lock.json. They are imported only when session.store names Redis or PostgreSQL.
#   --save-prod: without it npm still sees them as devDependencies and --omit=dev skips them
#                ("up to date", nothing installed);
#   --no-save:   package.json and package-lock.json stay exactly as they are.
# The import check below fails the build if either driver is missing.
RUN npm prune --omit=dev \
 && IOREDIS_VERSION="$(node -p "require('./package-lock.json').packages['node_modules/ioredis'].version")" \
 && PG_VERSION="$(node -p "require('./package-lock.json').packages['node_modules/pg'].version")" \
 && npm install --omit=dev --no-save --save-prod "ioredis@${IOREDIS_VERSION}" "pg@${PG_VERSION}" \
 && node -e "import('ioredis').then(() => import('pg')).then(() => console.log('session-store drivers: ok'))" \
 && npm cache clean --force

# ---------------------------------------------------------------------------------------------
# Runtime stage: Debian slim with Node 24, no compilers, no npm needed at run time.
# (Chosen over distroless: same Debian release as the build stage, an official image with the
# unprivileged `node` user predefined, and a shell for `docker exec` when debugging.)
# ---------------------------------------------------------------------------------------------
FROM node:${NODE_MAJOR}-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app

# Application files are owned by root and read-only for the process.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist

# /etc/gatehouse: mount the config here (read-only). /var/lib/gatehouse: the only writable place,
# for a SQLite store ("store": "sqlite:/var/lib/gatehouse/sessions.db"); mount a volume on it.
RUN mkdir -p /etc/gatehouse /var/lib/gatehouse \
 && chown node:node /var/lib/gatehouse

# The `node` user of the official image (uid/gid 1000), given numerically so that Kubernetes'
# runAsNonRoot can verify it.
USER 1000:1000

EXPOSE 8080

# Liveness via Node itself (the slim image has no curl/wget). If the config listens on another
# port, set GATEHOUSE_HEALTHCHECK_URL (e.g. http://127.0.0.1:9000/healthz).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.GATEHOUSE_HEALTHCHECK_URL || 'http://127.0.0.1:8080/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))"]

# gatehouse handles SIGTERM: stops accepting, finishes in-flight requests (up to 10 s), closes the
# store, exits 0. Give it more than 10 s (docker stop -t 15 / stop_grace_period: 15s).
STOPSIGNAL SIGTERM

ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["serve", "--config", "/etc/gatehouse/gatehouse.json"]
