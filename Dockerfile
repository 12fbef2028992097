# tranche service image. Node 24 runs the TypeScript sources directly (built-in type
# stripping), so there is no build step: production dependencies + the sources.
FROM node:24-slim

ENV NODE_ENV=production
WORKDIR /app

# Dependencies first, for layer caching.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY bin ./bin
COPY src ./src
COPY sql ./sql
COPY migrations ./migrations

USER node
EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["node", "bin/tranche.js", "serve"]
