# The development shell of k8s-lab: `nix develop` (or direnv's `use flake`), then the README's
# `make` targets. It provides the tools; the Python packages themselves come from
# requirements.lock into .venv (`make venv`), so ruff and mypy here are for editors and ad-hoc
# use, and the pinned ones in .venv are what `make lint` and CI run.
# No flake.lock is committed yet: the first `nix develop` on a machine with network writes one
# (commit it to pin nixpkgs). CI only parses this file: hack/check-flake.sh.
{
  description = "k8s-lab: a LabServer operator in Python (kopf), a local control plane, kind workflows";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
  };

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      devShells = forAllSystems (pkgs:
        let
          python = pkgs.python311;
          # Wheels from PyPI (aiohttp, yarl, pydantic-core, ...) are manylinux builds: on NixOS they
          # need libstdc++ and zlib found at run time.
          wheelLibs = pkgs.lib.makeLibraryPath [ pkgs.stdenv.cc.cc.lib pkgs.zlib ];
        in
        {
          default = pkgs.mkShell {
            packages = [
              # Python 3.11 with the venv tooling `make venv` uses (python -m venv, pip).
              python
              python.pkgs.pip
              python.pkgs.virtualenv
              # Go builds the local control plane (hack/build-bins.sh; hack/tools needs Go >= 1.26).
              pkgs.go
              # Kubernetes: kubectl (with kustomize: `kubectl apply -k deploy/`) and kind.
              pkgs.kubectl
              pkgs.kind
              # Build, lint, type-check, and the usual shell companions.
              pkgs.gnumake
              pkgs.ruff
              pkgs.mypy
              pkgs.git
              pkgs.curl
              pkgs.jq
            ];

            shellHook = ''
              ${pkgs.lib.optionalString pkgs.stdenv.isLinux ''
                export LD_LIBRARY_PATH="${wheelLibs}''${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
              ''}
              echo "k8s-lab dev shell: $(python3 --version), $(go version | cut -d' ' -f3), kubectl $(kubectl version --client -o json | jq -r .clientVersion.gitVersion), $(kind version 2>/dev/null | cut -d' ' -f1-2)"
              echo "next: make venv && make help"
            '';
          };
        });
    };
}
