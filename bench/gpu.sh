#!/usr/bin/env bash
# bench/gpu.sh — the bench:peer table (engine vs TensorFlow.js) with Dawn on this machine's real
# GPU through Vulkan and, when PyTorch with CUDA is present, PyTorch eager float32 on the same
# shapes, weights and batches (bench/torch_peer.py), so the ratio to PyTorch is one command away.
# Tests never depend on it.
#
#   bash bench/gpu.sh [bench:peer options, e.g. --only tiny,gpt2-vocab --steps 20 --profile]
#
# Offers Dawn every Vulkan driver manifest that is not a software rasterizer (lavapipe,
# SwiftShader) unless VK_ICD_FILENAMES is set, and stops if the adapter it gets is still a
# software one. Results go to bench/results/gpu-<UTC time>/
# (webgpu.json, torch.json, the model folders both read); bench:peer appends its table to
# bench/README.md as usual (add --no-log to skip that).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${VK_ICD_FILENAMES:-}" ]]; then
  # Every driver manifest but the software ones: Mesa installs manifests for hardware that may be
  # absent (intel, radeon, virtio …); the Vulkan loader skips those, and Dawn picks the
  # high-performance adapter among the rest.
  icds=()
  for icd in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do
    [[ -e "$icd" ]] || continue
    case "$(basename "$icd")" in
      lvp_icd*|*swiftshader*) continue ;;
    esac
    icds+=("$icd")
  done
  if ((${#icds[@]})); then VK_ICD_FILENAMES="$(IFS=:; echo "${icds[*]}")"; export VK_ICD_FILENAMES; fi
fi
if [[ -z "${VK_ICD_FILENAMES:-}" ]]; then
  echo "bench/gpu.sh: no Vulkan driver for a real GPU found in /usr/share/vulkan/icd.d or /etc/vulkan/icd.d" >&2
  echo "(install the GPU vendor's Vulkan driver, e.g. the NVIDIA driver's nvidia_icd.json, or set VK_ICD_FILENAMES)." >&2
  exit 1
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
out="bench/results/gpu-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
echo "Vulkan driver: $VK_ICD_FILENAMES; results in $out"

npx tsx bench/peer.ts --require-gpu --json "$out/webgpu.json" --keep-models "$out/models" "$@"

if python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  python3 bench/torch_peer.py --models "$out/models" --engine "$out/webgpu.json" --json "$out/torch.json"
else
  echo "PyTorch with CUDA is not available here: the PyTorch column was skipped (python3 bench/torch_peer.py --device cpu runs it on the CPU)."
fi
