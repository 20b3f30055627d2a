#!/bin/sh
# Like the AWS Lambda base images' entrypoint: under Lambda (AWS_LAMBDA_RUNTIME_API set, as by the emulator
# `sam local` mounts at /var/rapid) run the runtime client; elsewhere wrap it in the Runtime Interface Emulator.
if [ $# -lt 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  exec /usr/local/bin/aws-lambda-rie python -m awslambdaric "$@"
else
  exec python -m awslambdaric "$@"
fi
