"""docker/Dockerfile, docker/compose.yaml and .dockerignore, checked without Docker.

The lab robot's image is not built or tested in CI (no Docker, no GPU there), so what can go
wrong without building it is checked here, statically:

- every path the Dockerfile COPYs/ADDs exists in the repository and is not excluded by
  .dockerignore; every repository file a RUN, ENTRYPOINT or CMD names exists, was copied into
  the image before it is used, is not excluded, and is executable where it is run directly;
- no committed file of the workspace (src/, launch/, config/, models/, scripts/, ...) is
  excluded from the build context, and the host's builds (.venv, build/, install/, log/) and
  .git are;
- the image follows scripts/setup.sh: the same Debian packages, requirements and constraints,
  the same colcon command, the ROS distro of the PyPI wheels and env.bash;
- the launch file named in CMD exists and declares the robot_ip argument CMD passes;
- compose builds this Dockerfile from the repository root, mounts existing paths at the places
  the image reads them, and has what libfranka, the RealSense and the GPU need: host
  networking, SYS_NICE, rtprio 99 / unlimited memlock, USB device access, an NVIDIA device.
"""

from __future__ import annotations

from dataclasses import dataclass
import functools
import json
import os
from pathlib import Path, PurePosixPath
import re
import shlex
import subprocess

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / 'docker'
DOCKERFILE = DOCKER / 'Dockerfile'
COMPOSE = DOCKER / 'compose.yaml'
DOCKERIGNORE = ROOT / '.dockerignore'
# Written for issue #16 alongside the image; the Dockerfile's CMD starts it.
ROBOT_LAUNCH = 'launch/robot.launch.py'


# ---- the repository -------------------------------------------------------------------------

@functools.cache
def repository_files() -> frozenset[str]:
    """Files git tracks or would add (not ignored), relative to ROOT: what a fresh clone has,
    and so what the build context has on the lab PC. Outside a checkout: every file but those
    in hidden folders and the host's builds."""
    try:
        out = subprocess.run(
            ['git', '-C', str(ROOT), 'ls-files', '-z', '--cached', '--others',
             '--exclude-standard'], capture_output=True, check=True).stdout
        files = [p for p in out.decode().split('\0') if p]
    except (OSError, subprocess.CalledProcessError):
        skip = {'.venv', '.git', 'build', 'install', 'log'}
        files = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob('*')
                 if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    # A file deleted in the work tree but still tracked is not in the context.
    return frozenset(p for p in files if (ROOT / p).is_file())


def in_repository(rel: str) -> bool:
    rel = rel.rstrip('/')
    if rel in ('', '.'):
        return True
    return rel in repository_files() or any(p.startswith(rel + '/') for p in repository_files())


def git_mode(rel: str) -> str | None:
    """The mode git records for a tracked file (100755: executable in a fresh clone)."""
    try:
        out = subprocess.run(['git', '-C', str(ROOT), 'ls-files', '-s', '--', rel],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.split()[0] if out.strip() else None


def is_executable(rel: str) -> bool:
    mode = git_mode(rel)
    return os.access(ROOT / rel, os.X_OK) and mode in (None, '100755')


# ---- .dockerignore (Docker's pattern rules: last match wins, '!' re-includes, a pattern that
# matches a folder excludes what is in it, '**' spans folders) -----------------------------------

def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = '', 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == '*':
            if pattern[i + 1:i + 2] == '*':
                i += 1
                if pattern[i + 1:i + 2] == '/':
                    i += 1
                    out += '(?:.*/)?'
                else:
                    out += '.*'
            else:
                out += '[^/]*'
        elif ch == '?':
            out += '[^/]'
        elif ch == '[':
            end = pattern.index(']', i)
            out += '[' + pattern[i + 1:end].replace('!', '^', 1) + ']'
            i = end
        elif ch == '\\' and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + r'\Z')


@dataclass(frozen=True)
class IgnoreRule:
    text: str
    regex: re.Pattern[str]
    exception: bool


def dockerignore_rules(text: str) -> list[IgnoreRule]:
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        exception = line.startswith('!')
        pattern = line[1:].strip() if exception else line
        pattern = os.path.normpath(pattern).lstrip('/')
        rules.append(IgnoreRule(line, _pattern_regex(pattern), exception))
    return rules


def excluded(rel: str, rules: list[IgnoreRule]) -> IgnoreRule | None:
    """The rule that keeps ``rel`` out of the build context, None if it is sent."""
    parts = PurePosixPath(rel.rstrip('/')).parts
    candidates = ['/'.join(parts[:n]) for n in range(1, len(parts) + 1)]
    verdict = None
    for rule in rules:
        if any(rule.regex.match(c) for c in candidates):
            verdict = None if rule.exception else rule
    return verdict


@functools.cache
def ignore_rules() -> list[IgnoreRule]:
    return dockerignore_rules(DOCKERIGNORE.read_text(encoding='utf-8'))


# ---- the Dockerfile -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form ENTRYPOINT/CMD/RUN/COPY, None for the shell form."""
        if self.args.startswith('['):
            value = json.loads(self.args)
            assert isinstance(value, list), f'Dockerfile:{self.line}: not a JSON array'
            return [str(v) for v in value]
        return None


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined; comment lines (also inside a
    continued instruction, as Docker drops them) left out."""
    out: list[Instruction] = []
    current, start = '', 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith('#') or (not stripped and not current):
            continue
        if not current:
            start = number
        if stripped.endswith('\\'):
            current += stripped[:-1] + ' '
            continue
        current += stripped
        keyword, _, args = current.strip().partition(' ')
        out.append(Instruction(start, keyword.upper(), args.strip()))
        current = ''
    return out


@functools.cache
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding='utf-8'))


def workdir() -> PurePosixPath:
    dirs = [i.args for i in instructions() if i.keyword == 'WORKDIR']
    assert dirs, 'the Dockerfile sets no WORKDIR (where the workspace lives in the image)'
    return PurePosixPath(dirs[-1])


@dataclass(frozen=True)
class Copy:
    line: int
    sources: list[str]
    dest: str


def copies(upto_line: int | None = None) -> list[Copy]:
    """COPY/ADD from the build context (not --from another stage), before ``upto_line``."""
    found = []
    for ins in instructions():
        if ins.keyword not in ('COPY', 'ADD') or (upto_line and ins.line >= upto_line):
            continue
        words = ins.exec_form() or shlex.split(ins.args)
        flags = [w for w in words if w.startswith('--')]
        if any(f.startswith('--from') for f in flags):
            continue
        paths = [w for w in words if not w.startswith('--')]
        assert len(paths) >= 2, f'Dockerfile:{ins.line}: {ins.keyword} needs a source and a dest'
        found.append(Copy(ins.line, paths[:-1], paths[-1]))
    return found


def copied(rel: str, before_line: int) -> bool:
    """``rel`` was in a COPY/ADD source (itself, a folder above it, or '.') before the line."""
    for copy in copies(before_line):
        for source in copy.sources:
            source = os.path.normpath(source).lstrip('/')
            if source == '.' or rel == source or rel.startswith(source.rstrip('/') + '/'):
                return True
    return False


@functools.cache
def top_level_names() -> frozenset[str]:
    return frozenset(p.split('/')[0] for p in repository_files())


def repository_paths(text: str) -> list[str]:
    """The repository paths a command names: words that are a path under one of the
    repository's top-level entries (`scripts/x`, `docker/entrypoint.sh`, `colcon.meta`), or an
    absolute path inside the image's workspace (`/craik/docker/entrypoint.sh`)."""
    found = []
    app = workdir().as_posix().rstrip('/') + '/'
    for word in re.findall(r"[^\s'\"=;&|()<>`]+", text):
        word = word.rstrip(',')
        if word.startswith(app):
            word = word[len(app):]
        if word.startswith('/') or '$' in word:
            continue
        first = word.split('/')[0]
        if first in top_level_names() and (('/' in word) or '.' in first) and first != '.':
            found.append(os.path.normpath(word))
    return found


def directly_run(command: str) -> list[str]:
    """First words of the simple commands in a shell command line (the programs it runs)."""
    programs = []
    for part in re.split(r'&&|\|\||;|\|', command):
        words = part.split()
        while words and re.match(r'^\w+=', words[0]):
            words.pop(0)
        if words:
            programs.append(words[0])
    return programs


def run_commands() -> list[tuple[Instruction, str]]:
    """(instruction, command text) of each RUN, ENTRYPOINT and CMD."""
    out = []
    for ins in instructions():
        if ins.keyword in ('RUN', 'ENTRYPOINT', 'CMD'):
            words = ins.exec_form()
            out.append((ins, ' '.join(words) if words is not None else ins.args))
    return out


# ---- the checks: Dockerfile and .dockerignore ---------------------------------------------------

def test_the_dockerfile_has_a_pinned_base_and_the_instructions_it_needs():
    keywords = [i.keyword for i in instructions()]
    assert keywords.count('FROM') >= 1 and {'WORKDIR', 'ENTRYPOINT', 'CMD'} <= set(keywords)
    text = DOCKERFILE.read_text(encoding='utf-8')
    base = re.search(r'^ARG BASE_IMAGE=(\S+)', text, re.MULTILINE)
    assert base, 'the base image is an ARG (BASE_IMAGE) with a default'
    image = base.group(1)
    assert ':' in image.split('/')[-1] and not image.endswith(':latest'), \
        f'base image {image} needs an explicit tag'
    assert 'FROM ${BASE_IMAGE}' in text


def test_every_copied_path_exists_and_is_in_the_build_context():
    assert copies(), 'the Dockerfile copies nothing from the repository'
    problems = []
    for copy in copies():
        for source in copy.sources:
            rel = os.path.normpath(source).lstrip('/')
            if not in_repository(rel):
                problems.append(f'Dockerfile:{copy.line}: COPY {source}: not in the repository')
            elif rel != '.' and (rule := excluded(rel, ignore_rules())):
                problems.append(f'Dockerfile:{copy.line}: COPY {source}: excluded by '
                                f'.dockerignore rule {rule.text!r}')
    assert not problems, '\n'.join(problems)


def test_every_repository_file_a_command_uses_exists_was_copied_and_runs():
    problems, checked = [], []
    for ins, command in run_commands():
        where = f'Dockerfile:{ins.line}: {ins.keyword}'
        programs = {os.path.normpath(p) for p in repository_paths(' '.join(directly_run(command)))}
        for rel in repository_paths(command):
            checked.append(rel)
            if rel == ROBOT_LAUNCH and not (ROOT / rel).exists():
                continue    # test_the_launch_file_of_the_default_command_exists names it
            if not in_repository(rel):
                problems.append(f'{where} uses {rel}, which is not in the repository')
                continue
            if rule := excluded(rel, ignore_rules()):
                problems.append(f'{where} uses {rel}, excluded by .dockerignore {rule.text!r}')
            # ENTRYPOINT and CMD run in the finished image: everything copied counts.
            if not copied(rel, ins.line if ins.keyword == 'RUN' else 10 ** 9):
                problems.append(f'{where} uses {rel} before any COPY brings it into the image')
            if (ins.keyword == 'ENTRYPOINT' or rel in programs) and not is_executable(rel):
                problems.append(f'{where} runs {rel}, which is not executable '
                                f'(chmod +x; git must record mode 100755)')
    assert not problems, '\n'.join(problems)
    # The commands that must be found (else the parser above finds nothing and checks nothing).
    for expected in ('scripts/requirements.txt', 'scripts/constraints.txt', 'colcon.meta',
                     'docker/entrypoint.sh'):
        assert expected in checked, f'no RUN/ENTRYPOINT uses {expected}'


def test_dockerignore_keeps_host_builds_out_and_the_workspace_in():
    rules = ignore_rules()
    for rel in ('.venv/bin/python', 'build/craik_sim', 'install/setup.bash', 'log/latest',
                '.git/HEAD', 'src/craik_sim/craik_sim/__pycache__/x.pyc', 'reports/eval/x.png',
                'data/episodes/0.npz', 'runs/train/model.pt'):
        assert excluded(rel, rules), f'{rel} would be sent to the docker build'
    workspace = ('src/', 'launch/', 'config/', 'models/', 'scripts/', 'docker/', 'env.bash',
                 'colcon.meta')
    sent = [p for p in repository_files() if p.startswith(workspace)]
    assert any(p.startswith('src/') for p in sent)
    problems = [f'{p} (rule {rule.text!r})' for p in sent if (rule := excluded(p, rules))]
    assert not problems, 'committed workspace files excluded by .dockerignore:\n' + \
        '\n'.join(problems)


def test_dockerignore_matching_follows_docker():
    rules = dockerignore_rules('# c\n.venv\n**/__pycache__\n*.md\n!README.md\n/data\ndocs/*.png\n')
    assert excluded('.venv/lib/x.py', rules)
    assert excluded('__pycache__/a.pyc', rules) and excluded('src/p/__pycache__/a.pyc', rules)
    assert excluded('CONTRIBUTING.md', rules) and not excluded('README.md', rules)
    assert not excluded('src/p/README.md', rules)     # '*' stays within one folder
    assert excluded('data/x', rules) and not excluded('src/data/x', rules)
    assert excluded('docs/a.png', rules) and not excluded('docs/sub/a.png', rules)
    assert not excluded('src/craik_world_model/craik_world_model/data.py', rules)


def test_the_image_installs_what_setup_sh_installs():
    text = DOCKERFILE.read_text(encoding='utf-8')
    run_text = ' '.join(cmd for ins, cmd in run_commands() if ins.keyword == 'RUN')
    setup = (ROOT / 'scripts' / 'setup.sh').read_text(encoding='utf-8')
    apt = re.search(r'^APT_PACKAGES=\(([^)]*)\)', setup, re.MULTILINE)
    assert apt, 'scripts/setup.sh no longer lists APT_PACKAGES=(...)'
    missing = [p for p in apt.group(1).split() if not re.search(rf'(?<![\w.-]){re.escape(p)}'
                                                               rf'(?![\w.-])', run_text)]
    assert not missing, f'setup.sh installs Debian packages the image does not: {missing}'
    # Python packages from the same requirements and constraints.
    assert re.search(r'pip install[^&]*-c scripts/constraints\.txt', run_text)
    assert 'scripts/requirements.txt' in run_text
    # The same colcon build as setup.sh (per-package arguments from colcon.meta).
    assert re.search(r'colcon --log-base log build --metas colcon\.meta', run_text)
    assert 'colcon --log-base log build --metas colcon.meta' in setup
    # The ROS distro of the PyPI wheels (requirements.txt) and env.bash, from apt.
    distros = set(re.findall(r'^ros-(\w+)-', (ROOT / 'scripts' / 'requirements.txt')
                             .read_text(encoding='utf-8'), re.MULTILINE))
    assert len(distros) == 1, distros
    distro = distros.pop()
    assert f'ROS_DISTRO="${{ROS_DISTRO:-{distro}}}"' in (ROOT / 'env.bash').read_text()
    assert f'ROS_DISTRO={distro}' in text
    assert f'ros-{distro}-ros-base' in run_text and f'/opt/ros/{distro}/setup.bash' in run_text


# What the ros-<distro>-ros-base variant (REP 2001) brings of the packages a graph starts.
ROS_BASE = {'robot_state_publisher', 'tf2_ros', 'ros2launch', 'rclpy'}


def test_the_image_has_every_package_the_robot_graph_starts():
    graph = ROOT / 'config' / 'graphs' / 'robot.yaml'
    if not graph.exists():
        pytest.skip(f'no {graph.relative_to(ROOT)}')
    packages = {n['package'] for n in yaml.safe_load(graph.read_text(encoding='utf-8'))['nodes']}
    run_text = ' '.join(cmd for ins, cmd in run_commands() if ins.keyword == 'RUN')
    apt = set(re.findall(r'(?<![\w-])ros-kilted-([\w-]+)', run_text))
    missing = []
    for package in sorted(packages):
        if (ROOT / 'src' / package / 'package.xml').exists():
            continue                  # craik's own: built by the colcon step
        if package in ROS_BASE and 'ros-base' in apt:
            continue
        if package.replace('_', '-') not in apt:
            missing.append(package)
    assert not missing, f'config/graphs/robot.yaml starts ROS packages the image lacks: {missing}'
    assert 'xacro' in apt      # description:=<a .xacro file>


def _cmd() -> list[str]:
    cmds = [i for i in instructions() if i.keyword == 'CMD']
    assert cmds, 'the Dockerfile has no CMD'
    words = cmds[-1].exec_form()
    assert words is not None, 'CMD in exec form (JSON) so that the entrypoint execs it'
    return words


def test_the_default_command_launches_the_robot_graph():
    launch = re.findall(r'launch/[\w.-]+\.launch\.py', ' '.join(_cmd()))
    assert launch == [ROBOT_LAUNCH], f'CMD should run ros2 launch {ROBOT_LAUNCH}: {_cmd()}'
    assert 'ros2 launch' in ' '.join(_cmd()) and 'robot_ip:=${ROBOT_IP' in ' '.join(_cmd())
    assert 'calibration:=${CAMERA_CALIBRATION' in ' '.join(_cmd())   # the graph requires it
    entry = [i for i in instructions() if i.keyword == 'ENTRYPOINT'][-1].exec_form()
    assert entry and entry[0] == f'{workdir()}/docker/entrypoint.sh'
    assert 'exec "$@"' in (DOCKER / 'entrypoint.sh').read_text()


def test_the_launch_file_of_the_default_command_exists():
    path = ROOT / ROBOT_LAUNCH
    if not path.exists():
        pytest.xfail(f'{ROBOT_LAUNCH}, which the Dockerfile CMD starts, does not exist yet '
                     '(it is being written for issue #16); this test must pass once it exists')
    assert excluded(ROBOT_LAUNCH, ignore_rules()) is None
    text = path.read_text(encoding='utf-8')
    # CMD passes robot_ip:=...: the launch file declares it, itself or through the graph
    # description it starts (config/graphs/<GRAPH>.yaml, craik_bringup.launch_description).
    declared = bool(re.search(r"DeclareLaunchArgument\(\s*['\"]robot_ip['\"]", text))
    graph = re.search(r"^GRAPH = ['\"](\w+)['\"]", text, re.MULTILINE)
    if not declared and graph:
        description = ROOT / 'config' / 'graphs' / f'{graph.group(1)}.yaml'
        assert description.exists(), f'{ROBOT_LAUNCH} starts {description}, which is missing'
        assert excluded(description.relative_to(ROOT).as_posix(), ignore_rules()) is None
        arguments = yaml.safe_load(description.read_text(encoding='utf-8'))['arguments']
        declared = 'robot_ip' in arguments
    assert declared, f'{ROBOT_LAUNCH} does not declare the robot_ip argument that CMD passes'


# ---- compose ------------------------------------------------------------------------------------

@functools.cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding='utf-8'))


def service() -> dict:
    built = {n: s for n, s in compose()['services'].items() if 'build' in s}
    assert len(built) == 1, f'one service builds the image: {list(built)}'
    return next(iter(built.values()))


def _host_path(source: str) -> Path:
    return (DOCKER / source).resolve()


def test_compose_builds_this_dockerfile_from_the_repository_root():
    build = service()['build']
    context = _host_path(build['context'])
    assert context == ROOT, f'build context {context} is not the repository root'
    assert (context / build['dockerfile']).resolve() == DOCKERFILE


def test_compose_mounts_existing_paths_where_the_image_reads_them():
    mounts = {}
    for volume in service()['volumes']:
        source, target = volume.split(':')[:2]
        mounts[target] = source
        if source.startswith('.'):
            rel = _host_path(source).relative_to(ROOT).as_posix()
            assert in_repository(rel), f'compose mounts {source} ({rel}), not in the repository'
    app = workdir().as_posix()
    assert _host_path(mounts[f'{app}/models']) == ROOT / 'models'
    assert _host_path(mounts[f'{app}/config/calibration']) == ROOT / 'config' / 'calibration'
    # The TensorRT engine cache persists in a named volume at the image's CRAIK_TRT_CACHE.
    cache = re.search(r'CRAIK_TRT_CACHE=(\S+)', DOCKERFILE.read_text()).group(1)
    assert mounts.get(cache) in compose().get('volumes', {}), \
        f'no named volume at CRAIK_TRT_CACHE={cache}'


def test_compose_has_what_libfranka_the_camera_and_the_gpu_need():
    svc = service()
    assert svc['network_mode'] == 'host'
    assert 'SYS_NICE' in svc['cap_add']
    ulimits = svc['ulimits']

    def limit(name):
        value = ulimits[name]
        return (value['soft'], value['hard']) if isinstance(value, dict) else (value, value)

    assert limit('rtprio') == (99, 99)
    assert limit('memlock') == (-1, -1)
    # RealSense over USB: the USB character devices (major 189) allowed, /dev (or the USB bus)
    # mounted so that a re-enumerated camera appears, udev's database readable.
    usb = [re.fullmatch(r'c 189:\* ([rwm]+)', r) for r in svc['device_cgroup_rules']]
    assert any(m and {'r', 'w'} <= set(m.group(1)) for m in usb), svc['device_cgroup_rules']
    targets = {v.split(':')[1]: v.split(':')[0] for v in svc['volumes']}
    assert targets.get('/dev') == '/dev' or '/dev/bus/usb' in str(svc.get('devices', []))
    assert targets.get('/run/udev') == '/run/udev'
    devices = svc['deploy']['resources']['reservations']['devices']
    assert any(d.get('driver') == 'nvidia' and 'gpu' in d.get('capabilities', [])
               for d in devices)
    # The default command needs the robot's address and the camera's calibration: compose
    # refuses to start without them.
    assert str(svc['environment']['ROBOT_IP']).startswith('${ROBOT_IP:?')
    assert str(svc['environment']['CAMERA_CALIBRATION']).startswith('${CAMERA_CALIBRATION:?')
    assert 'command' not in svc or ROBOT_LAUNCH in str(svc['command'])
