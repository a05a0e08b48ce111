# Sourced by the scripts in this folder: root (the repository), shared (SAMQ_SHARED_DIR or
# ../shared) and build (SAMQ_BUILD_DIR or build/), all absolute.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${SAMQ_SHARED_DIR:-$root/../shared}"
build="${SAMQ_BUILD_DIR:-$root/build}"
