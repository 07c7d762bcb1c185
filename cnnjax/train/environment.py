"""What changes a run's numbers besides its config: the XLA flags the config chooses, and the record
of the software and machine each start of a run had (environment.json beside config.json).

XLA reads XLA_FLAGS once, when JAX first creates its backends (the first device query or
computation), not when `jax` is imported; `apply_xla_flags` must run before that. The CLI calls it for
`train` (with the resolved config) and for `eval`/`predict` (with the workdir's recorded config);
`train_and_evaluate` calls it again, so that a run started from Python gets the same flags, and
records whether they could still take effect.

config.xla_cpu_conv chooses where XLA:CPU runs `lax.conv_general_dilated` (also model.conv_impl='xla'
and the convolutions oneDNN cannot run):
  'eigen'    --xla_cpu_experimental_ynn_fusion_type=-individual_convolution: convolutions on Eigen,
             YNNPACK's other fusions kept (the faster training steps on the CPU: benchmarks/README.md
             "XLA:CPU flags"); what launch.sh set from commit 44cb7ad on
  'ynnpack'  no flag: the installed jaxlib's default (YNNPACK), what every run had before that commit
The flag is set only on the CPU platform (never on a GPU/TPU run) and only when the installed jaxlib
knows it (XLA aborts at start-up on an unknown flag). A value of the same flag set by hand in
XLA_FLAGS that differs from the config's choice is refused in one line: the config wins or nothing
runs, so config.json always names the convolution backend of the run. Other hand-set flags are kept
and recorded. The flags a config added are listed in CNNJAX_XLA_FLAGS_FROM_CONFIG, so that a process
started from a run (a sweep point, a subprocess) applies its own config instead of refusing them.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import platform as platform_lib
import socket
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

from cnnjax import atomic
from cnnjax.config.defaults import DEFAULT_XLA_CPU_CONV, XLA_CPU_CONVS
from cnnjax.errors import UserError
from cnnjax.train import workdir as workdir_lib
from cnnjax.train.workdir import ENVIRONMENT_FILE

CPU_CONV_FLAG = "xla_cpu_experimental_ynn_fusion_type"
FROM_CONFIG = "CNNJAX_XLA_FLAGS_FROM_CONFIG"  # the flags in XLA_FLAGS that a config chose
CACHE_DIR = pathlib.Path(__file__).resolve().parents[2] / "build" / "xla-flags"
ACCELERATOR_PLUGINS = ("jax-cuda", "jax_cuda", "jax-rocm", "jax_rocm", "libtpu")
VERSIONED = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections", "numpy",
             "tensorflow", "tensorflow-cpu", "tensorflow-datasets", "onednn")


class XlaFlagError(UserError):
    """XLA_FLAGS set by hand contradicts a config key that owns the same flag."""


# ---------------------------------------------------------------------------------------------------
# Side effects: the environment, the jaxlib files, the workdir
# ---------------------------------------------------------------------------------------------------

def apply_xla_flags(config: Mapping, environ: MutableMapping[str, str] | None = None,
                    flag_known=None) -> dict[str, Any]:
    """Sets environ['XLA_FLAGS'] (default os.environ) to what `config` chooses on this platform and
    returns what was decided (recorded in environment.json). Idempotent. `flag_known(name) -> bool`
    defaults to `jaxlib_knows`; it is asked only when a flag would be set.

    The flags it adds are listed in environ[FROM_CONFIG], so that a later call (a process started
    from this one, with its own config) does not take them for flags set by hand."""
    environ = os.environ if environ is None else environ
    choice = config.get("xla_cpu_conv", DEFAULT_XLA_CPU_CONV)
    on_cpu = predicted_platform(environ) == "cpu"
    want = XLA_CPU_CONVS.get(choice) if on_cpu else None
    known = (flag_known or jaxlib_knows)(CPU_CONV_FLAG) if want is not None else True
    ours = environ.get(FROM_CONFIG, "").split()
    hand = hand_set_flags(environ).split()
    flags, record = choose_xla_flags(choice, " ".join(hand), on_cpu, known)
    added = [t for t in flags.split() if t not in hand]
    for key, value in (("XLA_FLAGS", flags), (FROM_CONFIG, " ".join(added))):
        if value:
            environ[key] = value
        elif key != "XLA_FLAGS" or ours:  # an empty XLA_FLAGS set by hand stays as it was
            environ.pop(key, None)
    record["xla_flags_by_hand"] = " ".join(hand) if hand else None
    return record


def hand_set_flags(environ: Mapping[str, str]) -> str:
    """XLA_FLAGS without the flags a config chose (listed in environ[FROM_CONFIG])."""
    ours = environ.get(FROM_CONFIG, "").split()
    return " ".join(t for t in environ.get("XLA_FLAGS", "").split() if t not in ours)


def backends_started() -> bool:
    """Whether JAX's backends exist in this process (they read XLA_FLAGS when they start)."""
    try:
        from jax._src import xla_bridge  # no public API says so

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return False


def apply_for_run(config: Mapping) -> dict[str, Any]:
    """`apply_xla_flags` for a run that may start in a process where JAX already runs (a test, a
    notebook): there XLA_FLAGS is left as JAX read it, and the record says whether the config's
    choice is in effect, instead of claiming a flag XLA never saw."""
    if not backends_started():
        return apply_xla_flags(config)
    environ = dict(os.environ)
    try:
        record = apply_xla_flags(config, environ)
    except XlaFlagError as e:
        record = {"chosen": config.get("xla_cpu_conv", DEFAULT_XLA_CPU_CONV), "in_effect": False,
                  "why": str(e), "platform": predicted_platform(environ),
                  "xla_flags_by_hand": os.environ.get("XLA_FLAGS")}
    if environ.get("XLA_FLAGS", "") != os.environ.get("XLA_FLAGS", "") and record["in_effect"]:
        record.update(in_effect=False, why="JAX had started in this process before the run with "
                      "other XLA_FLAGS, which cannot change any more")
    record["xla_flags"] = os.environ.get("XLA_FLAGS", "")  # what JAX read: only set before it starts
    return record


def predicted_platform(environ: Mapping[str, str]) -> str:
    """'cpu' or 'accelerator': where JAX will run, without starting it. JAX_PLATFORMS decides when
    set (its first entry); otherwise JAX picks an installed GPU/TPU plugin first."""
    want = [p.strip() for p in environ.get("JAX_PLATFORMS", "").split(",") if p.strip()]
    if want:
        return "cpu" if want[0] == "cpu" else "accelerator"
    plugins = any((d.metadata["Name"] or "").lower().startswith(ACCELERATOR_PLUGINS)
                  for d in importlib.metadata.distributions())
    return "accelerator" if plugins else "cpu"


def jaxlib_knows(flag: str, jaxlib_dir: pathlib.Path | None = None,
                 cache_dir: pathlib.Path = CACHE_DIR) -> bool:
    """Whether a shared library of the installed jaxlib contains `flag`'s name (XLA registers its
    flags by name). The answer is cached in `cache_dir`, per jaxlib folder and flag, until the folder
    changes (a reinstall); scanning the libraries takes seconds."""
    if jaxlib_dir is None:
        spec = importlib.util.find_spec("jaxlib")
        if spec is None or not spec.submodule_search_locations:
            return False
        jaxlib_dir = pathlib.Path(spec.submodule_search_locations[0])
    key = hashlib.sha256(f"{jaxlib_dir} {flag}".encode()).hexdigest()[:16]
    cache = cache_dir / key
    try:
        if cache.stat().st_mtime >= jaxlib_dir.stat().st_mtime:
            return cache.read_text().strip() == "yes"
    except OSError:
        pass
    name = flag.encode()
    found = any(_contains(path, name) for path in sorted(jaxlib_dir.rglob("*.so*")) if path.is_file())
    try:  # write, then rename: a concurrent start reads the old answer or the new one
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{key}.tmp-{os.getpid()}")
        tmp.write_text("yes\n" if found else "no\n")
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only checkout: ask again next time
    return found


def _contains(path: pathlib.Path, needle: bytes, chunk: int = 1 << 24) -> bool:
    """Whether the file's bytes contain `needle` (read in chunks; the last len(needle) - 1 bytes of
    what was read are kept, so a name split between two reads is found)."""
    with open(path, "rb") as f:
        tail = b""
        while block := f.read(chunk):
            window = tail + block
            if needle in window:
                return True
            tail = window[-(len(needle) - 1):] if len(needle) > 1 else b""
    return False


def xla_choice_of_workdir(workdir: str | pathlib.Path) -> dict:
    """{'xla_cpu_conv': ...} of the latest run in `workdir` (config.json plus config_history.jsonl),
    the default for a workdir recorded before the key existed; {} when there is no config.json."""
    saved = workdir_lib.read_saved_config(workdir)
    if saved is None:
        return {}
    flat = workdir_lib.effective_config(workdir, saved)
    return {"xla_cpu_conv": flat.get("xla_cpu_conv", DEFAULT_XLA_CPU_CONV)}


def start_record(config: Mapping, start_step: int, xla: Mapping[str, Any]) -> dict[str, Any]:
    """What this start of a run had (call once JAX's backends exist): versions, XLA_FLAGS as JAX read
    them, devices, processes, the CPU, and which convolution conv_impl='auto' uses."""
    import jax

    devices = jax.devices()
    platform = devices[0].platform
    model = config.get("model") or {}
    record = {
        "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "step": int(start_step), "host": socket.gethostname(), "command": " ".join(sys.argv)[:500],
        "python": platform_lib.python_version(), "versions": package_versions(),
        "xla_flags": xla.get("xla_flags", os.environ.get("XLA_FLAGS", "")),
        "xla_flags_by_hand": xla.get("xla_flags_by_hand"),
        "xla_cpu_conv": {k: v for k, v in xla.items() if not k.startswith("xla_flags")},
        "platform": platform, "device_kind": devices[0].device_kind,
        "device_count": jax.device_count(), "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(), "cpu_model": cpu_model(),
        "cpu_count": len(os.sched_getaffinity(0)),
        "conv_impl": model.get("conv_impl"), "conv_auto": None,
    }
    if platform == "cpu" and model.get("conv_impl") in ("auto", "onednn"):
        from cnnjax.ops import onednn

        record["conv_auto"] = "onednn" if onednn.load() else f"xla ({onednn.failure()})"
    elif platform != "cpu":
        record["conv_auto"] = "xla"
    if xla.get("platform") == "accelerator" and platform == "cpu":  # a GPU plugin without a GPU
        record["xla_cpu_conv"].update(in_effect=False, why=(
            "an accelerator plugin is installed, but JAX runs on the CPU: set JAX_PLATFORMS=cpu"))
    return record


def package_versions() -> dict[str, str]:
    """Installed versions of the packages whose code computes or feeds a run (absent ones left out)."""
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('model name', or 'CPU part' on ARM), else platform's."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model"):
            return value.strip()
    return platform_lib.processor() or platform_lib.machine()


def record_start(workdir: str | pathlib.Path, record: Mapping[str, Any]) -> list[str]:
    """Appends `record` to workdir/environment.json (a list, one entry per start; written then
    renamed) and returns what differs from the first start, one 'key: first -> now' per item.
    An unreadable file is set aside as environment.json.unreadable, not overwritten."""
    path = pathlib.Path(workdir) / ENVIRONMENT_FILE
    starts: Any = []
    if path.is_file():
        try:
            starts = json.loads(path.read_text())
        except (OSError, ValueError):
            starts = None
        if not isinstance(starts, list):
            os.replace(path, path.with_name(ENVIRONMENT_FILE + ".unreadable"))
            starts = []
    changes = environment_changes(starts[0], record) if starts else []
    atomic.write_text(path, json.dumps([*starts, dict(record)], indent=1, sort_keys=True,
                                       default=str) + "\n")
    return changes


# ---------------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------------

def flag_values(xla_flags: str, name: str) -> list[str]:
    """Every value XLA_FLAGS gives flag `name` ('--name=v' -> 'v', a bare '--name' -> 'true')."""
    values = []
    for token in xla_flags.split():
        key, sep, value = token.lstrip("-").partition("=")
        if token.startswith("--") and key == name:
            values.append(value if sep else "true")
    return values


def choose_xla_flags(choice: str, by_hand: str, on_cpu: bool, flag_known: bool
                     ) -> tuple[str, dict[str, Any]]:
    """(XLA_FLAGS to set, the record) for config.xla_cpu_conv=`choice` when XLA_FLAGS is `by_hand`.

    Raises XlaFlagError when `by_hand` gives the flag another value than the choice sets on the CPU.
    """
    if choice not in XLA_CPU_CONVS:
        raise XlaFlagError(f"config.xla_cpu_conv={choice!r} is not accepted: one of "
                           f"{', '.join(map(repr, XLA_CPU_CONVS))}")
    record = {"chosen": choice, "platform": "cpu" if on_cpu else "accelerator",
              "xla_flags_by_hand": by_hand, "in_effect": True, "why": ""}
    if not on_cpu:
        record.update(in_effect=False, why="not a CPU run: XLA:CPU flags are not set")
        return by_hand, {**record, "xla_flags": by_hand}
    want = XLA_CPU_CONVS[choice]
    hand = flag_values(by_hand, CPU_CONV_FLAG)
    if hand and hand[-1] != want:
        set_by_choice = f"sets --{CPU_CONV_FLAG}={want}" if want is not None else "leaves it unset"
        raise XlaFlagError(
            f"XLA_FLAGS sets --{CPU_CONV_FLAG}={hand[-1]} by hand, but config.xla_cpu_conv="
            f"{choice!r} {set_by_choice}; remove it from XLA_FLAGS and choose with "
            f"--config.xla_cpu_conv ({' | '.join(XLA_CPU_CONVS)})")
    if want is None or hand:
        return by_hand, {**record, "xla_flags": by_hand}
    if not flag_known:
        record.update(in_effect=False, why=f"the installed jaxlib does not know --{CPU_CONV_FLAG}")
        return by_hand, {**record, "xla_flags": by_hand}
    flags = f"{by_hand} --{CPU_CONV_FLAG}={want}".strip()
    return flags, {**record, "xla_flags": flags}


def environment_changes(first: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """'key: first -> now' for each numerics-relevant item that differs between two start records."""
    keys = ("versions", "xla_flags", "platform", "device_kind", "device_count", "process_count",
            "cpu_model", "conv_auto")
    return [f"{k}: {first.get(k)!r} -> {now.get(k)!r}" for k in keys if first.get(k) != now.get(k)]


def main(argv: list[str] | None = None) -> int:
    """`python -m cnnjax.train.environment --xla-flags`: prints the XLA_FLAGS the default config gives
    here (launch.sh bench uses it: benchmarks have no config)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["--xla-flags"]:
        print("usage: python -m cnnjax.train.environment --xla-flags", file=sys.stderr)
        return 2
    environ = dict(os.environ)
    try:
        apply_xla_flags({"xla_cpu_conv": DEFAULT_XLA_CPU_CONV}, environ)
    except XlaFlagError:  # benchmarks compare flags by hand: what XLA_FLAGS says wins
        pass
    print(environ.get("XLA_FLAGS", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
