/* amx_probe.c: exit 0 if this process can run AMX-INT8 tile instructions (CPUID lists them, the OS enables the
 * tile state, Linux grants it: arch_prctl ARCH_REQ_XCOMP_PERM), else 1; a hypervisor that lists AMX without
 * granting it makes the tile instruction raise SIGILL, which the caller sees as a failure too.
 * build_llamacpp.sh uses it to build ggml's AMX kernels only where they run. */
#define _GNU_SOURCE
#include <immintrin.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct { unsigned char palette, start_row, reserved[14]; unsigned short colsb[16]; unsigned char rows[16]; } cfg;

int main(void) {
    if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) return 1;
    cfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 3; t++) { c.rows[t] = 16; c.colsb[t] = 64; }
    _tile_loadconfig(&c);
    static signed char a[16 * 64], b[16 * 64];
    static int out[16 * 16];
    a[0] = 3;
    b[0] = 5;
    _tile_zero(0);
    _tile_loadd(1, a, 64);
    _tile_loadd(2, b, 64);
    _tile_dpbssd(0, 1, 2);
    _tile_stored(0, out, 64);
    _tile_release();
    return out[0] == 15 ? 0 : 1;
}
