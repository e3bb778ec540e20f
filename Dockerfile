# syntax=docker/dockerfile:1
#
# Waitless as a container: `serve`, `worker` and `migrate` on PostgreSQL, configured by
# environment (DATABASE_URL, WAITLESS_*; see `docker run --rm waitless --help`).
#
#   docker build -t waitless .
#   docker run --init --rm -p 3000:3000 -e DATABASE_URL=postgres://… waitless serve --demo
#
# Your jobs: mount or copy a module to /app/jobs and set WAITLESS_JOBS (a .ts module runs as is;
# it imports 'waitless' and 'zod' from the image). See docker-compose.yml for a whole deployment.

# ---- build: the package as `npm pack` makes it, compiled with the devDependencies ----
FROM node:24-alpine AS build
WORKDIR /src
COPY package.json package-lock.json ./
# No install scripts: `prepare` would build before the sources are here; the build runs below.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json LICENSE README.md ./
COPY bin ./bin
COPY scripts ./scripts
COPY src ./src
RUN npm run build \
 && npm pack --ignore-scripts --pack-destination /tmp \
 && mv /tmp/waitless-*.tgz /tmp/waitless.tgz

# ---- run: the packed package installed with its production dependencies only ----
FROM node:24-alpine
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /tmp/waitless.tgz /tmp/waitless.tgz
RUN echo '{"name":"waitless-app","private":true,"type":"module"}' > package.json \
 && npm install --omit=dev --no-audit --no-fund /tmp/waitless.tgz \
 && rm /tmp/waitless.tgz \
 && npm cache clean --force \
 && mkdir /app/jobs
# Not root: the process needs to write nothing in the image.
USER node
EXPOSE 3000
# Live = the process answers. A worker answers only with a port: give it WAITLESS_PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.WAITLESS_PORT || process.env.PORT || 3000}/livez`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Node as PID 1 handles SIGINT/SIGTERM itself (running jobs get --shutdown-grace); run with
# --init (compose: `init: true`) so a signal that arrives while it is still loading is not ignored.
ENTRYPOINT ["node", "/app/node_modules/waitless/bin/waitless.js"]
CMD ["serve", "--demo"]
