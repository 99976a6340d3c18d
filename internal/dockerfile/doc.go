// Package dockerfile lints the repository's Dockerfile and .dockerignore as a Go test
// (hadolint is not available here): pinned base images, apt and pip hygiene, a non-root
// user, the documented `docker run --gpus all` usage. `npx dockerfilelint Dockerfile`
// (npm package dockerfilelint) was also run clean when the Dockerfile was written.
package dockerfile
