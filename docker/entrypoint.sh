#!/bin/sh
# cdcvec-entrypoint: the images' entry point. Reads the database password from a file (compose
# secrets) into PGPASSWORD, so it is never in argv or the environment of `docker inspect`; on
# the CUDA image, adds the CUDA forward-compatibility libraries when the host's driver is older
# than the toolkit's (CUDA 13 needs driver 580+); then runs cdcvec with the container's
# arguments. cdcvec logs the device it chose (event=model_loaded device=... reason=...).
set -eu
if [ -n "${PGPASSWORD_FILE:-}" ] && [ -z "${PGPASSWORD:-}" ]; then
  if [ ! -r "$PGPASSWORD_FILE" ]; then
    echo "cdcvec-entrypoint: PGPASSWORD_FILE=$PGPASSWORD_FILE is not readable; fix: create the secret file (docker/README: secrets)" >&2
    exit 1
  fi
  PGPASSWORD=$(cat "$PGPASSWORD_FILE")
  export PGPASSWORD
fi
if [ -d /usr/local/cuda/compat ] && [ -r /proc/driver/nvidia/version ]; then
  drv=$(sed -n 's/.*Kernel Module[^0-9]*\([0-9][0-9]*\)\..*/\1/p' /proc/driver/nvidia/version | head -n 1)
  if [ -n "$drv" ] && [ "$drv" -lt "${CDCVEC_CUDA_MIN_DRIVER:-580}" ]; then
    export LD_LIBRARY_PATH="/usr/local/cuda/compat${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "cdcvec-entrypoint: NVIDIA driver $drv is older than ${CDCVEC_CUDA_MIN_DRIVER:-580}: using /usr/local/cuda/compat" >&2
  fi
fi
exec cdcvec "$@"
