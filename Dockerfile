# syntax=docker/dockerfile:1
# Build: Node's image brings npm; Bun comes from npm (devDependency) and compiles one executable.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npx bun scripts/build.ts --outfile /out/adsrv

# Run: the compiled executable alone, as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/adsrv --create-home adsrv
COPY --from=build /out/adsrv /usr/local/bin/adsrv
USER adsrv
WORKDIR /var/lib/adsrv
ENV ADSRV_LISTEN=0.0.0.0:8080 \
    ADSRV_STATE_DIR=/var/lib/adsrv
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/adsrv"]
CMD ["serve"]
