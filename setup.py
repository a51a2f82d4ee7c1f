"""Builds moepy._C from csrc/kernels/*.c and csrc/python/*.c: -O3, C11, OpenMP when the compiler has it, runtime ISA dispatch.

No -march=native: AVX2 and AVX-512 kernels are compiled in their own files with target pragmas and
chosen at run time (csrc/kernels/cpu.c), so a built wheel runs on any x86-64.
Environment: MOEPY_SANITIZE=1 builds with AddressSanitizer + UBSan (see scripts/asan_tests.sh);
MOEPY_NO_OPENMP=1 forces a serial build.
"""
import glob
import os
import sys
import tempfile

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


class BuildExt(build_ext):
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
