"""Builds moepy._C from csrc/kernels/*.c and csrc/python/*.c: -O3, C11, OpenMP when the compiler has it, runtime ISA dispatch.

No -march=native: AVX2 and AVX-512 kernels are compiled in their own files with target pragmas and
chosen at run time (csrc/kernels/cpu.c), so a built wheel runs on any x86-64.

The C files of the extension compile in parallel (one compiler process per file, MOEPY_BUILD_JOBS
or all cores), with a line per file. Objects live in a stable build/temp.* directory of the project,
even under pip's PEP 660 editable build (which otherwise compiles in a fresh temporary directory each
time), and a source is recompiled only when it, a header/.inc of csrc/, or the compile flags (recorded
in a stamp next to the objects) changed: `pip install -e .` followed by `pip install -e ".[test]"`
compiles once.
Environment: MOEPY_SANITIZE=1 builds with AddressSanitizer + UBSan (see scripts/asan_tests.sh);
MOEPY_NO_OPENMP=1 forces a serial build; MOEPY_BUILD_JOBS=n sets the parallel compile jobs.
"""
import glob
import hashlib
import json
import os
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def compiler_accepts(compiler, flags, source="int main(void){return 0;}\n", link_flags=None):
    """True if `compiler` compiles and links `source` with `flags`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(source)
        try:
            objects = compiler.compile([path], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(objects, os.path.join(tmp, "probe"), extra_postargs=link_flags or flags)
        except Exception:
            return False
    return True


OPENMP_PROBE = "#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel\n{n=omp_get_num_threads();}\nreturn n<1;}\n"


ROOT = os.path.dirname(os.path.abspath(__file__))


def _mtime(path):
    try:
        return os.path.getmtime(path)
    except OSError:
        return -1.0


class ParallelCompile:
    """compiler.compile for one extension: the stale sources compiled concurrently, a line per file."""

    def __init__(self, compiler, headers, stamp_extra):
        self.compiler, self.compile_one = compiler, compiler.compile
        self.headers_mtime = max([_mtime(h) for h in headers] + [_mtime(os.path.join(ROOT, "setup.py"))])
        self.stamp_extra = stamp_extra

    def __call__(self, sources, output_dir=None, macros=None, include_dirs=None, debug=0, extra_preargs=None,
                 extra_postargs=None, depends=None):
        objects = self.compiler.object_filenames(sources, output_dir=output_dir)
        # the flags that make an object: the numpy include path is replaced by numpy's version (pip's isolated
        # build environment lives in a new temporary directory each time)
        np_inc = numpy.get_include()
        flags = json.dumps([self.compiler.compiler_so, macros, [d for d in (include_dirs or []) if d != np_inc],
                            extra_preargs, extra_postargs, debug, self.stamp_extra, numpy.__version__,
                            sys.version], sort_keys=True, default=str)
        stamp = os.path.join(output_dir or ".", "moepy-flags-" + hashlib.sha1(flags.encode()).hexdigest()[:12])
        same_flags = os.path.exists(stamp)
        stale = [(src, obj) for src, obj in zip(sources, objects)
                 if not same_flags or _mtime(obj) < max(_mtime(src), self.headers_mtime)]
        # longest first: the per-ISA files include every kernel (.inc) and dominate the build
        stale.sort(key=lambda so: (not os.path.basename(so[0]).startswith("isa_"), so[0]))
        for obj in {os.path.dirname(o) for _, o in stale}:
            os.makedirs(obj, exist_ok=True)
        jobs = int(os.environ.get("MOEPY_BUILD_JOBS", "0")) or os.cpu_count() or 1
        n, t0 = len(stale), time.time()
        print(f"moepy: compiling {n} of {len(sources)} C files with {min(jobs, max(n, 1))} jobs"
              + ("" if n else " (all objects up to date)"), flush=True)
        done = [0]

        def one(item):
            src, _ = item
            self.compile_one([src], output_dir=output_dir, macros=macros, include_dirs=include_dirs, debug=debug,
                             extra_preargs=extra_preargs, extra_postargs=extra_postargs, depends=depends)
            done[0] += 1
            print(f"moepy: [{done[0]}/{n}] {os.path.relpath(src, ROOT)} ({time.time() - t0:.1f} s)", flush=True)

        with ThreadPoolExecutor(max_workers=max(1, min(jobs, n))) as pool:
            list(pool.map(one, stale))  # re-raises the first compile error
        if not same_flags:
            for old in glob.glob(os.path.join(output_dir or ".", "moepy-flags-*")):
                os.remove(old)
            with open(stamp, "w") as f:
                f.write(flags)
        return objects


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        if getattr(self, "editable_mode", False):  # pip -e: keep objects in the project, not a fresh temp dir
            tag = f"temp.{sysconfig.get_platform()}-{sys.implementation.cache_tag}"
            self.build_temp = os.path.join(ROOT, "build", tag + ("-sanitize" if os.environ.get("MOEPY_SANITIZE") == "1"
                                                                 else ""))

    def build_extensions(self):
        compiler = self.compiler
        base = ["-O3", "-std=c11", "-fno-trapping-math", "-fno-math-errno", "-fno-strict-aliasing", "-Wall", "-Wno-unknown-pragmas"]
        link = []
        if os.environ.get("MOEPY_SANITIZE") == "1":
            san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
            base = ["-O1", "-g", "-std=c11", "-fno-strict-aliasing"] + san
            link += san
        use_openmp = os.environ.get("MOEPY_NO_OPENMP") != "1" and compiler_accepts(
            compiler, ["-fopenmp"], OPENMP_PROBE)
        if use_openmp:
            base.append("-fopenmp")
            link.append("-fopenmp")
        else:
            print("moepy: building WITHOUT OpenMP (the compiler lacks it); kernels run serially", file=sys.stderr)
        for ext in self.extensions:
            ext.extra_compile_args = base
            ext.extra_link_args = link
        headers = glob.glob(os.path.join(ROOT, "csrc", "*", "*.h")) + glob.glob(os.path.join(ROOT, "csrc", "*", "*.inc"))
        compiler.compile = ParallelCompile(compiler, headers, [base, link])
        super().build_extensions()


setup(
    ext_modules=[
        Extension(
            "moepy._C",
            sources=sorted(glob.glob("csrc/kernels/*.c") + glob.glob("csrc/python/*.c")),
            include_dirs=["csrc/kernels", "csrc/python", numpy.get_include()],
            depends=glob.glob("csrc/*/*.h") + glob.glob("csrc/*/*.inc"),
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
