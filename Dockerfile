# autoround for the CPU (OpenBLAS) and for WebGPU through Mesa's Vulkan drivers: lavapipe (software) when
# no GPU is passed in, AMD (radv) and Intel (anv) GPUs with --device /dev/dri. README § In a container.
#
#   docker build -t autoround .
#   docker run --rm --network none -v "$PWD/models:/models:ro" -v "$PWD/out:/out" \
#     autoround quantize --model /models/NAME --scheme W4A16 --output_dir /out/NAME-w4
#
# Building needs the npm registry (Deno 2.9.6 is the npm package `deno`, pinned in package.json) and, for
# `deno compile`, Deno's download of `denort`. Where only npm is reachable, --build-arg
# AUTOROUND_BUILD=bundle puts dist/autoround.js and the Deno executable in the image instead.
# Running needs no network.
ARG NODE_IMAGE=node:22-bookworm-slim
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${NODE_IMAGE} AS build
ARG AUTOROUND_BUILD=compile
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund
COPY . .
RUN .ci/image-files "$AUTOROUND_BUILD" /image

FROM ${BASE_IMAGE}
# The CPU backend loads OpenBLAS at run time; WebGPU reaches Mesa through the Vulkan loader.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libopenblas0-pthread libvulkan1 mesa-vulkan-drivers \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/autoround --shell /usr/sbin/nologin autoround \
    && mkdir -p /models /out \
    && chown autoround:autoround /out
COPY --from=build /image/ /
# autoround has no download code: a model is a folder, or an entry of the HF cache at HF_HUB_CACHE (mount a
# host cache at /models/hub and pass --model org/name). The *_OFFLINE variables tell any Hugging Face
# tool started in the container the same. XDG_RUNTIME_DIR stays unset on purpose: autoround makes a
# private one under /tmp for Mesa, for whichever user the container runs as.
ENV HF_HUB_CACHE=/models/hub \
    HF_HUB_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1
USER 10001:10001
WORKDIR /out
VOLUME ["/models", "/out"]
ENTRYPOINT ["autoround"]
CMD ["--help"]
