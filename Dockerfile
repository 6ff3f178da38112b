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
# or the published port is unreachable. Pass secrets as environment variables (${NAME} in the
# config, or GATEHOUSE_* variables) or as files (GATEHOUSE_<KEY>_FILE, e.g. Docker secrets under
# /run/secrets).
#
# The image installs gatehouse exactly as the README's "Install" section does: the build stage makes
# the package with `npm pack`, the runtime stage installs that tarball with the README's global-CLI
# line (tests/package/pack.test.ts checks that the two lines are the same).

ARG NODE_MAJOR=24

# ---------------------------------------------------------------------------------------------
# Build stage: full Node 24 image; `npm pack` builds dist/ (the prepack script) and packs it.
# ---------------------------------------------------------------------------------------------
FROM node:${NODE_MAJOR} AS build
WORKDIR /src
ENV npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false

# Dependencies first, so this layer is reused while only src/ changes. `npm ci` also runs the
# install script of the pinned `node` devDependency, which npm scripts (the build) use.
COPY package.json package-lock.json ./
RUN npm ci

# What the build and the package need (.dockerignore lets nothing else in).
COPY . .
RUN mkdir /pack && npm pack --pack-destination /pack

# The session-store drivers `ioredis` (redis:// / rediss://) and `pg` (postgres://) are optional peer
# dependencies, so installing gatehouse does not bring them; users of an image cannot easily add
# packages, so the image has both, at the versions this repository locks and tests.
RUN node -p "['ioredis', 'pg'].map((n) => n + '@' + require('./package-lock.json').packages['node_modules/' + n].version).join(' ')" > /pack/drivers.txt

# ---------------------------------------------------------------------------------------------
# Runtime stage: Debian slim with Node 24 and npm, no compilers.
# (Chosen over distroless: same Debian release as the build stage, an official image with the
# unprivileged `node` user predefined, and a shell for `docker exec` when debugging.)
# ---------------------------------------------------------------------------------------------
FROM node:${NODE_MAJOR}-slim AS runtime
ENV NODE_ENV=production \
    npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false

# The tarball is mounted from the build stage, not copied, so it leaves no layer behind, and npm's
# cache is a build cache, not part of the image. The package lands in /usr/local/lib/node_modules,
# owned by root and read-only for the process; its command is /usr/local/bin/gatehouse. npm resolves
# gatehouse's dependencies from their ranges, as for every user of the package (a package carries
# no package-lock.json).
WORKDIR /tmp/gatehouse-pack
RUN --mount=type=bind,from=build,source=/pack,target=/tmp/gatehouse-pack \
    --mount=type=cache,target=/root/.npm \
    npm install -g ./gatehouse-bff-0.1.0.tgz

# The drivers next to it in the global node_modules, where gatehouse's import('ioredis') and
# import('pg') find them. The import check fails the build if either is missing.
RUN --mount=type=bind,from=build,source=/pack,target=/tmp/gatehouse-pack \
    --mount=type=cache,target=/root/.npm \
    npm install -g $(cat drivers.txt) \
 && cd "$(npm root -g)/gatehouse-bff" \
 && node --input-type=module -e "await import('ioredis'); await import('pg'); console.log('session-store drivers: ok')"

# /etc/gatehouse: mount the config here (read-only). /var/lib/gatehouse: the only writable place,
# for a SQLite store ("store": "sqlite:/var/lib/gatehouse/sessions.db"); mount a volume on it.
RUN mkdir -p /etc/gatehouse /var/lib/gatehouse \
 && chown node:node /var/lib/gatehouse
WORKDIR /var/lib/gatehouse

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

ENTRYPOINT ["gatehouse"]
CMD ["serve", "--config", "/etc/gatehouse/gatehouse.json"]
