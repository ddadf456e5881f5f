// After the first entry a switch is _setjmp/_longjmp, which glibc's fortified build would
// refuse for a jump to another stack ("longjmp causes uninitialized stack frame").
#undef _FORTIFY_SOURCE
#include "walbust/io/fiber.h"

#include <setjmp.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define WALBUST_FIBER_ASAN 1
#endif

namespace walbust {
namespace {

thread_local Fiber* t_current = nullptr;
thread_local Fiber* t_starting = nullptr;  // handed to the trampoline, which takes no pointer

// AddressSanitizer tracks one stack per thread; it is told of every switch, or it would
// take the fiber's frames for overflows of the thread's stack.
void before_switch([[maybe_unused]] void** fake_stack, [[maybe_unused]] const void* bottom,
                   [[maybe_unused]] std::size_t size) {
#ifdef WALBUST_FIBER_ASAN
  __sanitizer_start_switch_fiber(fake_stack, bottom, size);
#endif
}

void after_switch([[maybe_unused]] void* fake_stack, [[maybe_unused]] const void** old_bottom,
                  [[maybe_unused]] std::size_t* old_size) {
#ifdef WALBUST_FIBER_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, old_bottom, old_size);
#endif
}

}  // namespace

// A switch saves the registers of one side and jumps to the other's. swapcontext() would
// do it with a system call each time (it saves the signal mask, which never differs here:
// the fiber runs on its owner's thread); so ucontext only builds the fiber's first frame
// and enters it once, and every switch after that is _setjmp/_longjmp, which touch no
// signal mask.
struct Fiber::Context {
  ucontext_t entry{};  // the first frame on the new stack
  ucontext_t creator{};
  jmp_buf fiber{};
  jmp_buf caller{};
  void* mapping = nullptr;  // guard page, then the stack
  std::size_t mapping_bytes = 0;
  char* stack = nullptr;
  std::size_t stack_bytes = 0;
  void* fiber_fake_stack = nullptr;  // sanitizer state of the suspended side
  void* caller_fake_stack = nullptr;
  const void* caller_bottom = nullptr;  // the resuming thread's stack, for switching back
  std::size_t caller_size = 0;
};

Fiber::Fiber(Body body, std::size_t stack_bytes) : body_(std::move(body)), ctx_(new Context) {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  stack_bytes = (stack_bytes + page - 1) / page * page;
  ctx_->mapping_bytes = stack_bytes + page;
  ctx_->mapping = ::mmap(nullptr, ctx_->mapping_bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (ctx_->mapping == MAP_FAILED) {
    throw std::runtime_error(std::string("cannot allocate a fiber stack: ") + std::strerror(errno));
  }
  // An overflow faults on the guard page instead of writing over other memory.
  (void)::mprotect(ctx_->mapping, page, PROT_NONE);
  ctx_->stack = static_cast<char*>(ctx_->mapping) + page;
  ctx_->stack_bytes = stack_bytes;
}

Fiber::~Fiber() {
  if (started_ && !finished_) cancel();
  if (ctx_->mapping != nullptr) ::munmap(ctx_->mapping, ctx_->mapping_bytes);
}

Fiber* Fiber::current() { return t_current; }

void Fiber::trampoline() {
  Fiber* self = t_starting;
  Context& c = *self->ctx_;
  after_switch(nullptr, &c.caller_bottom, &c.caller_size);
  // Keep this frame as the fiber's starting point and go back at once: the body starts
  // on the first real switch in, through _longjmp like every later one.
  if (_setjmp(c.fiber) == 0) {
    before_switch(&c.fiber_fake_stack, c.caller_bottom, c.caller_size);
    _longjmp(c.caller, 1);
  }
  after_switch(c.fiber_fake_stack, &c.caller_bottom, &c.caller_size);
  try {
    self->body_();
  } catch (...) {
    self->escaped_ = std::current_exception();
  }
  self->finished_ = true;
  // The last switch out: the sanitizer may free this stack's fake frames.
  before_switch(nullptr, c.caller_bottom, c.caller_size);
  _longjmp(c.caller, 1);
}

void Fiber::enter() {
  if (::getcontext(&ctx_->entry) != 0) throw std::runtime_error("getcontext failed");
  ctx_->entry.uc_stack.ss_sp = ctx_->stack;
  ctx_->entry.uc_stack.ss_size = ctx_->stack_bytes;
  ctx_->entry.uc_link = nullptr;  // the trampoline never returns
  ::makecontext(&ctx_->entry, &Fiber::trampoline, 0);
  t_starting = this;
  before_switch(&ctx_->caller_fake_stack, ctx_->stack, ctx_->stack_bytes);
  if (_setjmp(ctx_->caller) == 0) ::swapcontext(&ctx_->creator, &ctx_->entry);
  after_switch(ctx_->caller_fake_stack, nullptr, nullptr);
}

void Fiber::switch_in() {
  t_current = this;
  before_switch(&ctx_->caller_fake_stack, ctx_->stack, ctx_->stack_bytes);
  if (_setjmp(ctx_->caller) == 0) _longjmp(ctx_->fiber, 1);
  after_switch(ctx_->caller_fake_stack, nullptr, nullptr);
  t_current = nullptr;
}

void Fiber::switch_out() {
  before_switch(&ctx_->fiber_fake_stack, ctx_->caller_bottom, ctx_->caller_size);
  if (_setjmp(ctx_->fiber) == 0) _longjmp(ctx_->caller, 1);
  after_switch(ctx_->fiber_fake_stack, &ctx_->caller_bottom, &ctx_->caller_size);
}

void Fiber::resume(Wake wake) {
  // Fibers never nest: each is resumed by the loop that owns it, which keeps the one
  // place where control changes hands.
  if (t_current != nullptr) throw std::logic_error("a fiber cannot resume another fiber");
  if (finished_) return;
  wake_ = wake;
  if (!started_) {
    enter();
    started_ = true;
  }
  switch_in();
  if (finished_ && escaped_) std::rethrow_exception(std::exchange(escaped_, nullptr));
}

void Fiber::cancel() {
  cancelled_ = true;
  // Every wait now returns at once, so this ends after a bounded amount of work.
  while (started_ && !finished_) resume(Wake::Timeout);
}

Fiber::Wake fiber_wait(int fd, short events, std::chrono::milliseconds timeout) {
  Fiber* f = Fiber::current();
  if (f == nullptr) {
    if (fd < 0) {
      std::this_thread::sleep_for(timeout);
      return Fiber::Wake::Timeout;
    }
    pollfd p{fd, events, 0};
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      const int rc = ::poll(&p, 1, static_cast<int>(std::max<long long>(0, left.count())));
      if (rc > 0) return Fiber::Wake::Ready;
      if (rc == 0) return Fiber::Wake::Timeout;
      if (errno != EINTR) return Fiber::Wake::Ready;  // the next read or write reports it
    }
  }
  if (f->cancelled_) return Fiber::Wake::Timeout;
  f->wait_fd_ = fd;
  f->wait_events_ = events;
  f->wait_timeout_ = timeout;
  f->switch_out();
  f->wait_fd_ = -1;
  f->wait_events_ = 0;
  return f->cancelled_ ? Fiber::Wake::Timeout : f->wake_;
}

bool pause_for(std::chrono::milliseconds delay) {
  (void)fiber_wait(-1, 0, delay);
  const Fiber* f = Fiber::current();
  return f == nullptr || !f->cancelled();
}

}  // namespace walbust
