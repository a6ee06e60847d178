"""What goes into a sandbox (the runtime, covered paths, the command line) and the environment of
child processes."""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from pathlib import Path

from orch.sandbox import child_env, run_transform, transform_policy
from orch.sandbox.bubblewrap import Runtime, bwrap_command, masks, python_runtime
from orch.sandbox.environment import BASE_ENV
from orch.sandbox.limits import TransformLimits
from orch.settings import Settings
from tests.conftest import require_isolation


def test_a_child_environment_is_built_from_nothing() -> None:
    server = {"PATH": "/opt/bin", "HOME": "/root", "ORCH_API_KEYS": "k1", "OPENAI_API_KEY": "sk-x", "TZ": "UTC"}
    assert child_env(source=server) == {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    assert child_env(["TZ", "NOT_SET"], extra={"TOKEN": "declared", "PATH": "/srv/bin"}, source=server) == {
        "PATH": "/srv/bin", "LANG": "C.UTF-8", "TZ": "UTC", "TOKEN": "declared"}


def test_the_passthrough_list_comes_from_the_environment() -> None:
    settings = Settings.from_env({"ORCH_CHILD_ENV_PASSTHROUGH": "HTTPS_PROXY, TZ,"})
    assert settings.child_env_passthrough == ["HTTPS_PROXY", "TZ"]


def test_the_runtime_is_this_interpreter_without_its_venv() -> None:
    runtime = python_runtime()
    assert runtime.executable == os.path.realpath(sys.executable)
    assert os.path.join(sys.base_prefix, "lib") in runtime.binds or "/usr/lib" in runtime.binds
    assert not any(b == sys.prefix or b.startswith(sys.prefix + "/") for b in runtime.binds if sys.prefix != sys.base_prefix)
    assert all(not a.startswith(b + "/") for a in runtime.binds for b in runtime.binds)


def test_server_paths_inside_a_bind_are_covered_and_the_rest_are_not() -> None:
    runtime = Runtime("/usr/bin/python3", ("/usr/lib", "/opt/py/lib"))
    assert masks(runtime, ["/usr/lib/app", "/usr", "/srv/app", "/opt/py/lib"]) == ()  # none exists
    with tempfile.TemporaryDirectory() as top:
        (Path(top) / "lib" / "app").mkdir(parents=True)
        runtime = Runtime("/usr/bin/python3", (f"{top}/lib",))
        # inside a bind: covered; holding a bind or outside every bind: nothing to cover
        assert masks(runtime, [f"{top}/lib/app", top, f"{top}/lib", "/srv"]) == (f"{top}/lib/app",)


def test_the_command_covers_then_makes_everything_read_only() -> None:
    runtime = Runtime("/usr/bin/python3", ("/usr/lib", "/opt/py/lib"), (("usr/lib", "/lib"),))
    cmd = bwrap_command("bwrap", runtime, ["/usr/bin/python3", "-c", "pass"], limits=TransformLimits(scratch_mb=1),
                        info_fd=5, covered=["/usr/lib/app"], env={"LANG": "C.UTF-8"})
    assert cmd == [
        "bwrap", "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--hostname", "sandbox",
        "--info-fd", "5", "--cap-drop", "ALL", "--uid", "1000", "--gid", "1000", "--disable-userns",
        "--clearenv", "--setenv", "LANG", "C.UTF-8",
        "--perms", "0755", "--dir", "/usr", "--perms", "0755", "--dir", "/opt", "--perms", "0755", "--dir", "/opt/py",
        "--ro-bind", "/usr/lib", "/usr/lib", "--ro-bind", "/opt/py/lib", "/opt/py/lib", "--symlink", "usr/lib", "/lib",
        "--tmpfs", "/usr/lib/app", "--remount-ro", "/usr/lib/app",
        "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", "1048576", "--tmpfs", "/tmp",
        "--perms", "0777", "--size", "1048576", "--tmpfs", "/scratch", "--chdir", "/scratch",
        "--remount-ro", "/dev", "--remount-ro", "/", "--", "/usr/bin/python3", "-c", "pass",
    ]


async def test_a_server_living_inside_the_runtime_stays_hidden() -> None:
    require_isolation()
    policy = transform_policy(Settings(), local=False)
    assert policy.sandbox is not None
    with tempfile.TemporaryDirectory(dir="/var/tmp") as top:  # not /tmp: the sandbox has its own
        os.chmod(top, 0o755)
        app = Path(top) / "app"
        (app / "orch-data").mkdir(parents=True)
        (app / "orch-data" / "orch.db").write_text("the database")
        (Path(top) / "shared.txt").write_text("shared")
        runtime = dataclasses.replace(policy.sandbox.runtime, binds=(*policy.sandbox.runtime.binds, top))
        sandbox = dataclasses.replace(policy.sandbox, runtime=runtime, covered=masks(runtime, [str(app)]))
        code = "import os\nresult = [sorted(os.listdir(state['top'])), os.listdir(state['app'])]"
        assert await run_transform(code, {"top": top, "app": str(app)}, sandbox=sandbox) == [["app", "shared.txt"], []]
