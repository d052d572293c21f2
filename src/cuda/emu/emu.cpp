/* emu.cpp — the CUDA emulator's runtime (cuda_emu.h): memory, streams, events, errors, and launches.
 *
 * A launch runs its blocks one after another; a block's threads run on fibers (cooperative stacks) on the
 * calling OS thread. A fiber takes the next thread not yet started and runs it to the end or to a barrier
 * (__syncthreads, a shuffle, __syncwarp, a vote); there the thread waits and its fiber switches straight to
 * the next thing that can run (pick_next): a thread its barrier has released, else a fresh fiber for the
 * threads not yet started. When every thread of the block (or every lane of the warp) has arrived, the
 * waiting threads run on in thread order. So a kernel without barriers runs a block on one fiber, a
 * function call per thread, and one with barriers pays one context switch per thread and barrier. The
 * host's loop (run_block) gets control back only when nothing can run: the block is done, or deadlocked.
 * Fibers and their stacks are made once and reused across launches.
 *
 * What a GPU would hang on or leave undefined fails the launch with a message naming it: a barrier some
 * threads never reach because they exited, threads waiting at different barriers (block and warp), lanes
 * of one warp at different warp operations, a shuffle with a partial mask or from a lane that does not
 * exist. The failure is not sticky (a GPU's context would be lost): the launch returns
 * cudaErrorLaunchFailure (read and cleared, as compat.h's cudaGetLastError after <<< >>> does), and
 * cudaGetErrorString gives the message.
 *
 * Context switches: a few lines of assembly on x86-64 (swapcontext makes a system call per switch, which
 * would dominate a shuffle-heavy kernel), ucontext elsewhere or with MAGNA_EMU_UCONTEXT. Under ASan every
 * switch is announced (__sanitizer_start/finish_switch_fiber) so the sanitizer follows the stacks, and a
 * sanitizer's report from inside a kernel is followed by the launch, block and thread it came from. */
#include "cuda_emu.h"

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define MAGNA_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MAGNA_EMU_ASAN 1
#endif
#endif
#ifdef MAGNA_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__) && !defined(MAGNA_EMU_UCONTEXT)
#define MAGNA_EMU_UCONTEXT 1
#endif
#ifdef MAGNA_EMU_UCONTEXT
#include <ucontext.h>
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace {

/* ---- contexts ----------------------------------------------------------------------------------------- */

struct Ctx {
#ifdef MAGNA_EMU_UCONTEXT
    ucontext_t uc;
#else
    void *sp;
#endif
};

#ifndef MAGNA_EMU_UCONTEXT
/* magna_emu_swap(&from->sp, to->sp): saves the callee-saved registers, MXCSR and the x87 control word on
 * the current stack, stores its pointer, and restores the same from the other stack. A fresh fiber's stack
 * is laid out (fiber_init) so that the restore "returns" into magna_emu_fiber_start with the fiber in r12
 * and its function in r13. */
extern "C" void magna_emu_swap(void **save, void *load);
extern "C" void magna_emu_fiber_start(void);
asm(R"(
    .text
    .p2align 4
    .globl magna_emu_swap
    .hidden magna_emu_swap
    .type magna_emu_swap, @function
magna_emu_swap:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size magna_emu_swap, .-magna_emu_swap

    .globl magna_emu_fiber_start
    .hidden magna_emu_fiber_start
    .type magna_emu_fiber_start, @function
magna_emu_fiber_start:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size magna_emu_fiber_start, .-magna_emu_fiber_start
    .section .note.GNU-stack,"",@progbits
    .text
)");
#endif

struct Fiber {
    Ctx ctx;
    char *stack; /* usable [stack, stack + stack_size), a guard page below */
    size_t stack_size;
    int thread; /* the block's thread it runs, -1 between threads */
    bool fresh; /* its stack must be laid out again before it runs (new, or abandoned by a failure) */
};

enum : uint8_t { T_UNSTARTED, T_RUNNING, T_WAIT_BLOCK, T_WAIT_WARP, T_READY, T_DONE };
enum : uint8_t { W_NONE, W_SHFL, W_SYNCWARP, W_BALLOT };
static const char *const warp_op_name[] = {"", "a shuffle", "__syncwarp",
                                           "a vote (__ballot_sync/__any_sync/__all_sync)"};

struct Warp {
    unsigned lanes;   /* lanes that exist (the block's last warp may be partial) */
    unsigned arrived; /* at the current warp operation */
    unsigned exited;
    unsigned gen; /* warp operations completed; its parity picks the slot row */
    uint8_t op;   /* the operation the waiting lanes are at */
    uint64_t slot[2][32];
};

struct Launch {
    const char *where, *what;
    dim3 grid, block;
    void (*body)(void *);
    void *ctx;
    unsigned char *shared;
    size_t shared_bytes;
    /* the block being run */
    unsigned n, next, done, wait_block, wait_warp;
    std::vector<uint8_t> state;
    std::vector<Fiber *> fiber_of; /* the fiber running or holding each started thread */
    std::vector<Warp> warps;
    std::vector<int> ready; /* threads to resume, in order; ready_head is the next */
    size_t ready_head;
    bool reverse; /* this block runs its threads last to first (thread_order) */
    bool failed;
    std::string failure;
};

struct Emu {
    std::recursive_mutex lock; /* one launch or runtime call at a time */
    Ctx host;
    std::vector<Fiber *> fibers, idle;
    Fiber *current = nullptr;
    Launch *launch = nullptr;
    cudaError_t last_error = cudaSuccess;
    std::string last_failure;                    /* the message of the last error the emulator explained ... */
    cudaError_t last_failure_code = cudaSuccess; /* ... and its code */
    long long launches = 0;
    std::map<uintptr_t, size_t> device, pinned; /* cudaMalloc'd and cudaMallocHost'd [start, start + size) */
    std::set<void *> streams, events;           /* live handles */
    std::map<const void *, int> max_dynamic_shared;
    size_t allocated = 0;
    bool switch_from_host = false; /* whether the last switch left the host */
#ifdef MAGNA_EMU_ASAN
    const void *host_bottom = nullptr;
    size_t host_size = 0;
#endif
};
Emu &emu() {
    static Emu *e = new Emu; /* never destroyed: a leak checker or a late cudaFree at exit must still find it */
    return *e;
}

/* whether one block of `blocks` holds [p, p + n) */
bool in_blocks(const std::map<uintptr_t, size_t> &blocks, const void *p, size_t n) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    auto it = blocks.upper_bound(a);
    if (it == blocks.begin()) return false;
    --it;
    return a >= it->first && a + n <= it->first + it->second;
}
bool in_device(const void *p, size_t n) { return in_blocks(emu().device, p, n); }

#ifdef MAGNA_EMU_ASAN
const size_t fiber_stack_bytes = 256 << 10; /* ASan's redzones make frames several times larger */
#else
const size_t fiber_stack_bytes = 64 << 10;
#endif

void fiber_main(void *arg);

void fiber_init(Fiber *f) {
#ifdef MAGNA_EMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(f->stack, f->stack_size); /* frames an abandoned thread left poisoned */
#endif
#ifdef MAGNA_EMU_UCONTEXT
    getcontext(&f->ctx.uc);
    f->ctx.uc.uc_stack.ss_sp = f->stack;
    f->ctx.uc.uc_stack.ss_size = f->stack_size;
    f->ctx.uc.uc_link = nullptr;
    const uintptr_t p = reinterpret_cast<uintptr_t>(f);
    makecontext(&f->ctx.uc, reinterpret_cast<void (*)()>(+[](unsigned hi, unsigned lo) {
        fiber_main(reinterpret_cast<void *>((uintptr_t)hi << 32 | lo));
    }),
                2, (unsigned)(p >> 32), (unsigned)p);
#else
    /* what magna_emu_swap pops, 8 slots: MXCSR and x87 control word, r15, r14, r13 (function), r12
     * (argument), rbx, rbp, the return address; after the ret the stack pointer is 16-byte aligned, so the
     * call in magna_emu_fiber_start enters the function as the ABI wants (rsp + 8 aligned) */
    uintptr_t top = (reinterpret_cast<uintptr_t>(f->stack) + f->stack_size) & ~(uintptr_t)15;
    uint64_t *sp = reinterpret_cast<uint64_t *>(top - 16 - 64);
    const uint32_t mxcsr = 0x1f80, fpucw = 0x037f;
    sp[0] = mxcsr | (uint64_t)fpucw << 32;
    sp[1] = sp[2] = 0;                               /* r15 r14 */
    sp[3] = reinterpret_cast<uint64_t>(&fiber_main); /* r13 */
    sp[4] = reinterpret_cast<uint64_t>(f);           /* r12 */
    sp[5] = sp[6] = 0;                               /* rbx rbp */
    sp[7] = reinterpret_cast<uint64_t>(&magna_emu_fiber_start);
    f->ctx.sp = sp;
#endif
    f->fresh = false;
}

Fiber *fiber_new() {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *m = mmap(nullptr, fiber_stack_bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    mprotect(m, page, PROT_NONE); /* an overflowing kernel faults instead of writing over the next stack */
    Fiber *f = new Fiber();
    f->stack = static_cast<char *>(m) + page, f->stack_size = fiber_stack_bytes;
    f->thread = -1, f->fresh = true;
    emu().fibers.push_back(f);
    return f;
}

/* from the running context (a fiber, or the host: nullptr) to another; `last`: the fiber leaving is
 * abandoned (a failed launch), so ASan may drop its fake stack */
void transfer(Fiber *from, Fiber *to, bool last = false) {
    Emu &e = emu();
    if (to && to->fresh) fiber_init(to);
#ifdef MAGNA_EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(last ? nullptr : &fake, to ? to->stack : e.host_bottom,
                                   to ? to->stack_size : e.host_size);
#endif
    e.switch_from_host = from == nullptr;
#ifdef MAGNA_EMU_UCONTEXT
    swapcontext(from ? &from->ctx.uc : &e.host.uc, to ? &to->ctx.uc : &e.host.uc);
#else
    magna_emu_swap(from ? &from->ctx.sp : &e.host.sp, to ? to->ctx.sp : e.host.sp);
#endif
#ifdef MAGNA_EMU_ASAN
    const void *bottom;
    size_t size;
    __sanitizer_finish_switch_fiber(fake, &bottom, &size);
    if (from && e.switch_from_host) e.host_bottom = bottom, e.host_size = size; /* where to come back to */
#endif
}

void set_thread(const Launch &L, unsigned t) {
    threadIdx.x = t % L.block.x;
    threadIdx.y = (t / L.block.x) % L.block.y;
    threadIdx.z = t / (L.block.x * L.block.y);
}

/* ---- failures ------------------------------------------------------------------------------------------ */

__attribute__((format(printf, 1, 2))) void launch_fail(const char *fmt, ...) {
    Launch &L = *emu().launch;
    if (L.failed) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char head[1024];
    snprintf(head, sizeof head,
             "launch at %s, magna_cuda_launch(%s), grid (%u,%u,%u) block (%u,%u,%u): block (%u,%u,%u): %s", L.where,
             L.what, L.grid.x, L.grid.y, L.grid.z, L.block.x, L.block.y, L.block.z, blockIdx.x, blockIdx.y, blockIdx.z,
             msg);
    L.failed = true;
    L.failure = head;
}

/* the running thread stops for good: the launch has failed, its fiber is abandoned */
[[noreturn]] void abandon_thread() {
    Emu &e = emu();
    Fiber *f = e.current;
    f->fresh = true;
    transfer(f, nullptr, true);
    abort(); /* never resumed */
}

Fiber *current_thread_fiber(const char *what) {
    Emu &e = emu();
    if (!e.launch || !e.current || e.current->thread < 0) {
        fprintf(stderr, "CUDA emulator: %s called outside a kernel\n", what);
        abort();
    }
    return e.current;
}

/* ---- the scheduler ------------------------------------------------------------------------------------- */

/* What runs next in the block: the fiber of the first released thread, else a fiber to start the threads
 * not yet started, else nothing (the block is done, failed or deadlocked: the host decides which). Every
 * context calls it when its thread waits or ends and switches straight to the answer. */
Fiber *pick_next(Launch &L) {
    Emu &e = emu();
    if (L.failed) return nullptr;
    if (L.ready_head < L.ready.size()) {
        const int t = L.ready[L.ready_head++];
        if (L.ready_head == L.ready.size()) L.ready.clear(), L.ready_head = 0;
        return L.fiber_of[t];
    }
    if (L.next < L.n) {
        Fiber *f = nullptr;
        if (!e.idle.empty())
            f = e.idle.back(), e.idle.pop_back();
        else
            f = fiber_new();
        if (!f) launch_fail("out of memory for a fiber stack");
        return f;
    }
    return nullptr;
}

/* the running thread's coordinates and state, after its fiber is entered or resumed */
void enter_thread(Launch &L, Fiber *f) {
    emu().current = f;
    set_thread(L, (unsigned)f->thread);
    L.state[f->thread] = T_RUNNING;
}

void fiber_main(void *arg) {
    Fiber *f = static_cast<Fiber *>(arg);
    Emu &e = emu();
#ifdef MAGNA_EMU_ASAN
    const void *bottom;
    size_t size;
    __sanitizer_finish_switch_fiber(nullptr, &bottom, &size);
    if (e.switch_from_host) e.host_bottom = bottom, e.host_size = size;
#endif
    for (;;) {
        Launch &L = *e.launch;
        while (L.next < L.n && !L.failed) {
            const unsigned k = L.next++, t = L.reverse ? L.n - 1 - k : k;
            f->thread = (int)t;
            L.fiber_of[t] = f;
            enter_thread(L, f);
            L.body(L.ctx);
            L.state[t] = T_DONE;
            L.done++;
            Warp &W = L.warps[t / 32];
            W.exited++;
            if (L.wait_block)
                launch_fail("thread (%u,%u,%u) exited while %u threads wait at __syncthreads: a barrier not every "
                            "thread reaches (a hang on a GPU)",
                            threadIdx.x, threadIdx.y, threadIdx.z, L.wait_block);
            else if (W.arrived)
                launch_fail("thread (%u,%u,%u) exited while %u lanes of its warp wait at %s for it", threadIdx.x,
                            threadIdx.y, threadIdx.z, W.arrived, warp_op_name[W.op]);
        }
        f->thread = -1;
        e.current = nullptr;
        e.idle.push_back(f);
        transfer(f, pick_next(L)); /* a fiber holding a released thread, or the host */
    }
}

/* the running thread waits at a barrier: run what can run; come back here once the barrier is complete */
void suspend(Fiber *f) {
    Launch &L = *emu().launch;
    Fiber *next = pick_next(L);
    if (next != f) transfer(f, next); /* f itself: its barrier completed with it, and it is first in line */
    if (L.failed) abandon_thread();
    enter_thread(L, f);
}

/* The order a block runs its threads in (and resumes them after a barrier): MAGNA_EMU_ORDER=forward or
 * reverse, or by default alternating from block to block and launch to launch. One order hides a missing
 * barrier where a thread reads what a thread before it wrote (it has already run); the other exposes it,
 * so alternating shows such races in any kernel a test launches more than once or with several blocks. */
bool thread_order_reversed(unsigned long long block) {
    static const int order = [] {
        const char *v = getenv("MAGNA_EMU_ORDER");
        return v && strcmp(v, "forward") == 0 ? 0 : v && strcmp(v, "reverse") == 0 ? 1 : 2;
    }();
    return order == 2 ? ((unsigned long long)emu().launches + block) & 1 : order == 1;
}

void run_block(Launch &L, unsigned long long block) {
    L.reverse = thread_order_reversed(block);
    L.next = L.done = L.wait_block = L.wait_warp = 0;
    std::fill(L.state.begin(), L.state.end(), T_UNSTARTED);
    for (size_t w = 0; w < L.warps.size(); w++) {
        Warp &W = L.warps[w];
        W.lanes = L.n - 32 * (unsigned)w < 32 ? L.n - 32 * (unsigned)w : 32;
        W.arrived = 0, W.exited = 0, W.gen = 0, W.op = W_NONE;
    }
    L.ready.clear(), L.ready_head = 0;
    if (L.shared) memset(L.shared, 0xff, L.shared_bytes); /* NaN floats, -1 ints: a read before a write shows */
    /* the fibers pass control among themselves and come back here when nothing can run */
    while (Fiber *f = pick_next(L)) transfer(nullptr, f);
    if (L.failed || L.done == L.n) return;
    launch_fail("deadlock: %u threads wait at __syncthreads and %u at warp operations, %u exited: threads "
                "waiting at different barriers (a hang on a GPU)",
                L.wait_block, L.wait_warp, L.done);
}

} // namespace

/* ---- device-side calls --------------------------------------------------------------------------------- */

extern "C" void __syncthreads(void) {
    Fiber *f = current_thread_fiber("__syncthreads");
    Launch &L = *emu().launch;
    const unsigned t = (unsigned)f->thread;
    if (L.done) {
        launch_fail("thread (%u,%u,%u) reached __syncthreads after %u threads of its block exited: a barrier not "
                    "every thread reaches (a hang on a GPU)",
                    threadIdx.x, threadIdx.y, threadIdx.z, L.done);
        abandon_thread();
    }
    L.state[t] = T_WAIT_BLOCK;
    if (++L.wait_block == L.n) {
        for (unsigned k = 0; k < L.n; k++) {
            const unsigned i = L.reverse ? L.n - 1 - k : k;
            if (L.state[i] == T_WAIT_BLOCK) L.state[i] = T_READY, L.ready.push_back((int)i);
        }
        L.wait_block = 0;
    }
    suspend(f);
}

namespace {
/* arrive at the warp's current operation; returns the generation (slot row) this lane took part in */
unsigned warp_arrive(Fiber *f, uint8_t op, unsigned mask, uint64_t value) {
    Launch &L = *emu().launch;
    const unsigned t = (unsigned)f->thread, w = t / 32, lane = t % 32;
    Warp &W = L.warps[w];
    const unsigned exist = W.lanes == 32 ? 0xffffffffu : (1u << W.lanes) - 1;
    if ((mask & exist) != exist) {
        launch_fail("%s with mask 0x%08x in warp %u (lanes 0x%08x): the emulator runs full-warp masks only",
                    warp_op_name[op], mask, w, exist);
        abandon_thread();
    }
    if (W.exited) {
        launch_fail("thread %u reached %s after %u lanes of its warp exited", t, warp_op_name[op], W.exited);
        abandon_thread();
    }
    if (W.arrived && W.op != op) {
        launch_fail("lane %u of warp %u reached %s while other lanes wait at %s", lane, w, warp_op_name[op],
                    warp_op_name[W.op]);
        abandon_thread();
    }
    const unsigned gen = W.gen;
    W.op = op;
    W.slot[gen & 1][lane] = value;
    L.state[t] = T_WAIT_WARP;
    L.wait_warp++;
    if (++W.arrived == W.lanes) {
        for (unsigned k = 0; k < W.lanes; k++) {
            const unsigned i = 32 * w + (L.reverse ? W.lanes - 1 - k : k);
            L.state[i] = T_READY, L.ready.push_back((int)i);
        }
        L.wait_warp -= W.lanes;
        W.arrived = 0, W.op = W_NONE, W.gen++;
    }
    suspend(f);
    /* the slot row of gen is rewritten only at gen + 2, which needs this lane to arrive at gen + 1 first */
    return gen;
}
} // namespace

extern "C" void __syncwarp(unsigned int mask) {
    Fiber *f = current_thread_fiber("__syncwarp");
    warp_arrive(f, W_SYNCWARP, mask, 0);
}

extern "C" uint64_t magna_emu_shfl(unsigned int mask, uint64_t value, int mode, int b, int width) {
    Fiber *f = current_thread_fiber("a shuffle");
    Launch &L = *emu().launch;
    const unsigned t = (unsigned)f->thread;
    if (width <= 0 || width > 32 || (width & (width - 1))) {
        launch_fail("shuffle width %d: not a power of two up to 32", width);
        abandon_thread();
    }
    const unsigned gen = warp_arrive(f, W_SHFL, mask, value);
    /* PTX shfl.sync: c = ((32 - width) << 8) | clamp, clamp 0 for up and 31 for the others */
    const int lane = (int)(t % 32), segmask = 32 - width, clamp = mode == MAGNA_EMU_SHFL_UP ? 0 : 31;
    const int max_lane = (lane & segmask) | (clamp & ~segmask), min_lane = lane & segmask, bv = b & 31;
    int j = lane;
    bool in = false;
    switch (mode) {
    case MAGNA_EMU_SHFL_UP: j = lane - bv, in = j >= max_lane; break;
    case MAGNA_EMU_SHFL_DOWN: j = lane + bv, in = j <= max_lane; break;
    case MAGNA_EMU_SHFL_XOR: j = lane ^ bv, in = j <= max_lane; break;
    default: j = min_lane | (bv & ~segmask), in = j <= max_lane; break;
    }
    if (!in) j = lane;
    const Warp &W = L.warps[t / 32];
    if ((unsigned)j >= W.lanes) {
        launch_fail("thread %u shuffles from lane %d, which does not exist in its warp of %u lanes (undefined on "
                    "a GPU)",
                    t, j, W.lanes);
        abandon_thread();
    }
    return W.slot[gen & 1][j];
}

extern "C" unsigned int magna_emu_ballot(unsigned int mask, int predicate) {
    Fiber *f = current_thread_fiber("a warp vote");
    Launch &L = *emu().launch;
    const unsigned gen = warp_arrive(f, W_BALLOT, mask, predicate != 0);
    const Warp &W = L.warps[(unsigned)f->thread / 32];
    unsigned bits = 0;
    for (unsigned i = 0; i < W.lanes && i < 32; i++) bits |= (unsigned)(W.slot[gen & 1][i] != 0) << i;
    return bits & mask;
}

extern "C" void *magna_emu_dynamic_shared(void) {
    current_thread_fiber("MAGNA_DYNAMIC_SHARED");
    return emu().launch->shared;
}

/* ---- launches ------------------------------------------------------------------------------------------ */

namespace {
/* an error without a message of ours: CUDA's text for it from now on */
cudaError_t set_error(cudaError_t err) {
    Emu &e = emu();
    if (err != cudaSuccess) e.last_error = err, e.last_failure_code = cudaSuccess;
    return err;
}
__attribute__((format(printf, 2, 3))) cudaError_t fail(cudaError_t err, const char *fmt, ...) {
    Emu &e = emu();
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    e.last_failure = std::string("CUDA emulator: ") + msg;
    fprintf(stderr, "%s\n", e.last_failure.c_str());
    e.last_error = err, e.last_failure_code = err;
    return err;
}
bool valid_stream(void *s) {
    return s == nullptr || s == (void *)1 || s == (void *)2 || emu().streams.count(s); /* legacy, per-thread */
}
} // namespace

extern "C" cudaError_t magna_emu_func_set_attribute(const void *kernel, int attr, int value) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize)
        return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: attribute %d is not emulated", attr);
    if (value < 0 || value > 227 * 1024)
        return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: %d bytes of dynamic shared memory (at most 227 KiB)",
                    value);
    e.max_dynamic_shared[kernel] = value;
    return cudaSuccess;
}

namespace {
#ifdef MAGNA_EMU_ASAN
/* a sanitizer's report from inside a kernel names the kernel's source line; this says which launch, block
 * and thread */
void report_kernel_context() {
    Emu &e = emu();
    if (!e.launch) return;
    const Launch &L = *e.launch;
    fprintf(stderr, "CUDA emulator: the report above is from the launch at %s, magna_cuda_launch(%s), block (%u,%u,%u)",
            L.where, L.what, blockIdx.x, blockIdx.y, blockIdx.z);
    if (e.current && e.current->thread >= 0)
        fprintf(stderr, ", thread (%u,%u,%u)", threadIdx.x, threadIdx.y, threadIdx.z);
    fprintf(stderr, "\n");
}
#endif
} // namespace

extern "C" cudaError_t magna_emu_check_pointer_arg(const void *p, int index, const char *where, const char *what) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    /* NULL, device memory (its end too: an empty range), or page-locked host memory, which a GPU reaches */
    if (!p || in_device(p, 0) || in_blocks(e.pinned, p, 0)) return cudaSuccess;
    return fail(cudaErrorIllegalAddress,
                "launch at %s, magna_cuda_launch(%s): kernel argument %d is %p, which is neither device memory nor "
                "cudaMallocHost'd: a host pointer (an illegal address on a GPU)",
                where, what, index, p);
}

namespace {
cudaError_t launch(dim3 grid, dim3 block, size_t shared_bytes, void *stream, const void *kernel, void (*body)(void *),
                   void *ctx, const char *where, const char *what) {
    Emu &e = emu();
#ifdef MAGNA_EMU_ASAN
    static const bool hooked = (__sanitizer_set_death_callback(report_kernel_context), true);
    (void)hooked;
#endif
    if (e.launch)
        return fail(cudaErrorLaunchFailure, "launch at %s (%s) from inside a kernel: not emulated", where, what);
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535 ||
        block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
        threads > 1024)
        return fail(cudaErrorInvalidConfiguration, "launch at %s (%s): grid (%u,%u,%u) block (%u,%u,%u) is invalid",
                    where, what, grid.x, grid.y, grid.z, block.x, block.y, block.z);
    int max_shared = 48 * 1024;
    auto attr = e.max_dynamic_shared.find(kernel);
    if (attr != e.max_dynamic_shared.end() && attr->second > max_shared) max_shared = attr->second;
    if (shared_bytes > (size_t)max_shared)
        return fail(cudaErrorInvalidValue,
                    "launch at %s (%s): %zu bytes of dynamic shared memory, over %d (beyond 48 KiB it needs "
                    "cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize))",
                    where, what, shared_bytes, max_shared);
    if (!valid_stream(stream))
        return fail(cudaErrorInvalidResourceHandle, "launch at %s (%s): stream %p is not a live stream", where, what,
                    stream);

    static Launch L; /* reused: its vectors keep their capacity */
    L.where = where, L.what = what, L.grid = grid, L.block = block, L.body = body, L.ctx = ctx;
    L.shared_bytes = shared_bytes;
    L.shared = shared_bytes ? static_cast<unsigned char *>(malloc(shared_bytes)) : nullptr; /* exact: ASan */
    L.n = (unsigned)threads;
    L.state.assign(L.n, T_UNSTARTED);
    L.fiber_of.assign(L.n, nullptr);
    L.warps.resize((L.n + 31) / 32);
    L.failed = false;
    L.failure.clear();
    e.launch = &L;
    e.launches++;
    gridDim = grid, blockDim = block;
    for (unsigned z = 0; z < grid.z && !L.failed; z++)
        for (unsigned y = 0; y < grid.y && !L.failed; y++)
            for (unsigned x = 0; x < grid.x && !L.failed; x++) {
                blockIdx.x = x, blockIdx.y = y, blockIdx.z = z;
                run_block(L, x + (unsigned long long)grid.x * (y + (unsigned long long)grid.y * z));
            }
    e.launch = nullptr, e.current = nullptr;
    free(L.shared);
    L.shared = nullptr;
    if (!L.failed) return cudaSuccess;
    /* the abandoned threads' fibers start afresh; the idle ones hold no thread */
    e.idle.clear();
    for (Fiber *f : e.fibers) {
        if (f->thread >= 0) f->fresh = true;
        f->thread = -1;
        e.idle.push_back(f);
    }
    return fail(cudaErrorLaunchFailure, "%s", L.failure.c_str());
}
} // namespace

/* Returns what compat.h's nvcc path returns after `kernel<<<...>>>`: cudaGetLastError(), so the launch's own
 * failure or an earlier call's that nobody read, and clears it. */
extern "C" cudaError_t magna_emu_launch(dim3 grid, dim3 block, size_t shared_bytes, void *stream, const void *kernel,
                                        void (*body)(void *), void *ctx, const char *where, const char *what) {
    std::lock_guard<std::recursive_mutex> g(emu().lock);
    launch(grid, block, shared_bytes, stream, kernel, body, ctx, where, what);
    return cudaGetLastError();
}

extern "C" long long magna_emu_launch_count(void) { return emu().launches; }
extern "C" const char *magna_emu_last_failure(void) { return emu().last_failure.c_str(); }

/* ---- memory -------------------------------------------------------------------------------------------- */

namespace {
const char *kind_name(cudaMemcpyKind k) {
    static const char *const names[] = {"cudaMemcpyHostToHost", "cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost",
                                        "cudaMemcpyDeviceToDevice", "cudaMemcpyDefault"};
    return (unsigned)k <= 4 ? names[k] : "an unknown kind";
}
} // namespace

extern "C" cudaError_t cudaMalloc(void **ptr, size_t size) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    if (!ptr) return set_error(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (size == 0) return cudaSuccess;
    void *p = nullptr;
    if (posix_memalign(&p, 256, size) != 0) return set_error(cudaErrorMemoryAllocation); /* exact size: ASan */
    memset(p, 0xff, size); /* a GPU's fresh memory holds anything: NaN floats here, so a missed zeroing shows */
    e.device[reinterpret_cast<uintptr_t>(p)] = size;
    e.allocated += size;
    *ptr = p;
    return cudaSuccess;
}

extern "C" cudaError_t cudaFree(void *ptr) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    if (!ptr) return cudaSuccess;
    auto it = e.device.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == e.device.end())
        return fail(cudaErrorInvalidValue, "cudaFree(%p): not a pointer cudaMalloc returned", ptr);
    e.allocated -= it->second;
    e.device.erase(it);
    free(ptr);
    return cudaSuccess;
}

extern "C" cudaError_t cudaMallocHost(void **ptr, size_t size) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    if (!ptr) return set_error(cudaErrorInvalidValue);
    *ptr = malloc(size ? size : 1);
    if (!*ptr) return set_error(cudaErrorMemoryAllocation);
    e.pinned[reinterpret_cast<uintptr_t>(*ptr)] = size;
    return cudaSuccess;
}
extern "C" cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned int flags) { return cudaMallocHost(ptr, size); }

extern "C" cudaError_t cudaFreeHost(void *ptr) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    if (!ptr) return cudaSuccess;
    if (!e.pinned.erase(reinterpret_cast<uintptr_t>(ptr)))
        return fail(cudaErrorInvalidValue, "cudaFreeHost(%p): not a pointer cudaMallocHost returned", ptr);
    free(ptr);
    return cudaSuccess;
}

extern "C" cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    if (count == 0) return cudaSuccess;
    if (!dst || !src) return fail(cudaErrorInvalidValue, "%s of %zu bytes with a NULL pointer", kind_name(kind), count);
    /* the direction must match the pointers (undefined on a GPU), and the device side lie inside one allocation */
    const bool dd = in_device(dst, count), sd = in_device(src, count);
    const bool want_dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool want_sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind == cudaMemcpyDefault) {
    } else if ((unsigned)kind > 4) {
        return fail(cudaErrorInvalidMemcpyDirection, "cudaMemcpy kind %d", (int)kind);
    } else if (dd != want_dd || sd != want_sd) {
        return fail(cudaErrorInvalidValue,
                    "%s of %zu bytes from %p to %p: the source is %s and the destination %s (device memory: inside "
                    "one cudaMalloc'd block)",
                    kind_name(kind), count, src, dst, sd ? "device memory" : "not device memory",
                    dd ? "device memory" : "not device memory");
    }
    memmove(dst, src, count);
    return cudaSuccess;
}
extern "C" cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind,
                                       cudaStream_t stream) {
    if (!valid_stream(stream))
        return fail(cudaErrorInvalidResourceHandle, "cudaMemcpyAsync on a dead stream %p", (void *)stream);
    return cudaMemcpy(dst, src, count, kind);
}

extern "C" cudaError_t cudaMemset(void *ptr, int value, size_t count) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    if (count == 0) return cudaSuccess;
    if (!in_device(ptr, count))
        return fail(cudaErrorInvalidValue, "cudaMemset(%p, %d, %zu): not inside one cudaMalloc'd block", ptr, value,
                    count);
    memset(ptr, value, count);
    return cudaSuccess;
}
extern "C" cudaError_t cudaMemsetAsync(void *ptr, int value, size_t count, cudaStream_t stream) {
    if (!valid_stream(stream))
        return fail(cudaErrorInvalidResourceHandle, "cudaMemsetAsync on a dead stream %p", (void *)stream);
    return cudaMemset(ptr, value, count);
}

extern "C" cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    const size_t total = (size_t)80 << 30; /* an H100's, as the real build targets */
    if (free_bytes) *free_bytes = e.allocated < total ? total - e.allocated : 0;
    if (total_bytes) *total_bytes = total;
    return cudaSuccess;
}

/* ---- streams and events: everything is done when a call returns ----------------------------------------- */

struct CUstream_st {
    int unused;
};
struct CUevent_st {
    double ms;
    bool recorded;
};

extern "C" cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, 0); }
extern "C" cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    if (!stream) return set_error(cudaErrorInvalidValue);
    *stream = new CUstream_st();
    e.streams.insert(*stream);
    return cudaSuccess;
}
extern "C" cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    if (!e.streams.erase(stream))
        return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy(%p): not a live stream", (void *)stream);
    delete stream;
    return cudaSuccess;
}
extern "C" cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    std::lock_guard<std::recursive_mutex> g(emu().lock);
    return valid_stream(stream)
               ? cudaSuccess
               : fail(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize(%p): not a live stream", (void *)stream);
}
static bool streams_stalled = false;
extern "C" void magna_emu_stall_streams(int on) { streams_stalled = on != 0; }
extern "C" cudaError_t cudaStreamQuery(cudaStream_t stream) {
    std::lock_guard<std::recursive_mutex> g(emu().lock);
    if (!valid_stream(stream))
        return fail(cudaErrorInvalidResourceHandle, "cudaStreamQuery(%p): not a live stream", (void *)stream);
    return streams_stalled ? cudaErrorNotReady : cudaSuccess; /* (not an error: not sticky, not recorded) */
}
extern "C" int magna_emu_is_device(const void *p, size_t bytes) {
    std::lock_guard<std::recursive_mutex> g(emu().lock);
    return in_device(p, bytes);
}
extern "C" cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
    std::lock_guard<std::recursive_mutex> g(emu().lock);
    if (!valid_stream(stream) || !emu().events.count(event))
        return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent(%p, %p): not a live stream and event",
                    (void *)stream, (void *)event);
    return cudaSuccess;
}
extern "C" cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

extern "C" cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, 0); }
extern "C" cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    if (!event) return set_error(cudaErrorInvalidValue);
    *event = new CUevent_st();
    e.events.insert(*event);
    return cudaSuccess;
}
extern "C" cudaError_t cudaEventDestroy(cudaEvent_t event) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    if (!e.events.erase(event))
        return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy(%p): not a live event", (void *)event);
    delete event;
    return cudaSuccess;
}
extern "C" cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    if (!e.events.count(event) || !valid_stream(stream))
        return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord(%p, %p): not a live event and stream",
                    (void *)event, (void *)stream);
    event->ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
    event->recorded = true;
    return cudaSuccess;
}
extern "C" cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    std::lock_guard<std::recursive_mutex> g(emu().lock);
    return emu().events.count(event)
               ? cudaSuccess
               : fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize(%p): not a live event", (void *)event);
}
extern "C" cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }
extern "C" cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    if (!ms || !e.events.count(start) || !e.events.count(end)) return set_error(cudaErrorInvalidResourceHandle);
    if (!start->recorded || !end->recorded) return set_error(cudaErrorInvalidResourceHandle);
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}

/* ---- the device and errors ------------------------------------------------------------------------------ */

extern "C" cudaError_t cudaGetDeviceCount(int *count) {
    if (!count) return set_error(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}
extern "C" cudaError_t cudaGetDevice(int *device) {
    if (!device) return set_error(cudaErrorInvalidValue);
    *device = 0;
    return cudaSuccess;
}
extern "C" cudaError_t cudaSetDevice(int device) {
    return device == 0 ? cudaSuccess : set_error(cudaErrorInvalidDevice);
}
extern "C" cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device) {
    if (!prop) return set_error(cudaErrorInvalidValue);
    if (device != 0) return set_error(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "emulated CUDA device (CPU)");
    prop->totalGlobalMem = (size_t)80 << 30;
    prop->sharedMemPerBlock = 48 * 1024, prop->sharedMemPerBlockOptin = 227 * 1024;
    prop->warpSize = 32, prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024, prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 0x7fffffff, prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
    prop->major = 9, prop->minor = 0, prop->multiProcessorCount = 132;
    return cudaSuccess;
}
extern "C" cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
    cudaDeviceProp p;
    const cudaError_t err = cudaGetDeviceProperties(&p, device);
    if (err != cudaSuccess || !value) return set_error(err != cudaSuccess ? err : cudaErrorInvalidValue);
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)p.sharedMemPerBlockOptin; break;
    default: return set_error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

extern "C" cudaError_t cudaGetLastError(void) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> g(e.lock);
    const cudaError_t err = e.last_error;
    e.last_error = cudaSuccess;
    return err;
}
extern "C" cudaError_t cudaPeekAtLastError(void) { return emu().last_error; }

extern "C" const char *cudaGetErrorName(cudaError_t error) {
    switch (error) {
#define NAME(e)                                                                                                        \
    case e: return #e;
        NAME(cudaSuccess)
        NAME(cudaErrorInvalidValue) NAME(cudaErrorMemoryAllocation) NAME(cudaErrorInitializationError)
            NAME(cudaErrorInvalidConfiguration) NAME(cudaErrorInvalidDevicePointer)
                NAME(cudaErrorInvalidMemcpyDirection) NAME(cudaErrorInsufficientDriver) NAME(cudaErrorNoDevice)
                    NAME(cudaErrorInvalidDevice) NAME(cudaErrorInvalidResourceHandle) NAME(cudaErrorNotReady)
                        NAME(cudaErrorLaunchOutOfResources) NAME(cudaErrorIllegalAddress) NAME(cudaErrorLaunchTimeout)
                            NAME(cudaErrorLaunchFailure) NAME(cudaErrorUnknown)
#undef NAME
    }
    return "cudaErrorUnknown";
}

extern "C" const char *cudaGetErrorString(cudaError_t error) {
    Emu &e = emu();
    /* the emulator's own message says which call or launch and why */
    if (error != cudaSuccess && error == e.last_failure_code) return e.last_failure.c_str();
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchTimeout: return "the launch timed out and was terminated";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    default: return "unknown error";
    }
}
