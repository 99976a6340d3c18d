// Package dockerfile lints the repository's Dockerfile and .dockerignore as a Go test
// (hadolint is not available here). The Dockerfile goes through BuildKit's own Dockerfile
// frontend (github.com/moby/buildkit/frontend/dockerfile: parser, instructions, linter and
// dockerfile2llb), so every warning of the rules `docker build --check` applies fails the
// test; base images are resolved offline, so no registry or daemon is needed. The project's
// own rules are then checked on BuildKit's typed instructions: pinned base images, apt and
// pip hygiene, no curl|sh or sudo, no ADD of URLs, a non-root user, an exec-form entrypoint,
// the documented `docker run --gpus all` usage, and what .dockerignore leaves out.
package dockerfile
