// oneDNN convolutions for XLA:CPU, called through the XLA FFI (typed custom calls).
//
// Three handlers, one per map of a 2-D grouped cross-correlation y = conv(x, w):
//   cnnjax_onednn_conv_fwd          x (N,H,W,Cin), w (kh,kw,Cin/g,Cout) -> y (N,Ho,Wo,Cout)
//   cnnjax_onednn_conv_bwd_data     dy, w -> dx   (the gradient with respect to the input)
//   cnnjax_onednn_conv_bwd_weights  x, dy -> dw   (the gradient with respect to the kernel)
// Arrays stay in cnnjax's NHWC / HWIO layout; oneDNN reads them through strided memory
// descriptors, so no transposes are made. The geometry comes as one int64 attribute
//   geom = [sh, sw, dh, dw, pad_top, pad_bottom, pad_left, pad_right, groups, weights_any]
// (dilation as cnnjax counts it, 1 = dense). With weights_any = 1 the primitive picks its own
// (blocked) kernel layout and the small kernel is reordered per call; with 0 it reads HWIO.
//
// Primitive descriptors and primitives are expensive to create, so each (handler, dtype, shapes,
// geometry) is built once and kept in a mutex-guarded cache. Executing a primitive is
// thread-safe when every call brings its own scratchpad, so the scratchpad is "user" mode and
// lives in a per-thread buffer: XLA may run two convolutions at once on its thread pool.

#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

enum class Kind { kFwd, kBwdData, kBwdWeights };

struct Geometry {
  int64_t sh, sw, dh, dw, pt, pb, pl, pr, groups;
  bool weights_any;
};

// One cached problem: the primitive, and the reorder between the user's HWIO kernel and the
// primitive's kernel layout when they differ.
struct Entry {
  dnnl::primitive prim;
  memory::desc user_w, prim_w;
  std::optional<dnnl::reorder> reorder;  // user -> prim (fwd, bwd_data); prim -> user (bwd_w)
  size_t scratch_bytes = 0;
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// A growable, 64-byte aligned per-thread buffer (scratchpad and reordered kernel).
struct Arena {
  void* ptr = nullptr;
  size_t size = 0;
  void* Get(size_t bytes) {
    if (bytes > size) {
      std::free(ptr);
      size = (bytes + 63) / 64 * 64;
      ptr = std::aligned_alloc(64, size);
    }
    return ptr;
  }
  ~Arena() { std::free(ptr); }
};

// x: (N, H, W, C) NHWC seen as oneDNN's logical (N, C, H, W).
memory::desc ActivationDesc(const ffi::AnyBuffer::Dimensions& d, memory::data_type dt) {
  const int64_t n = d[0], h = d[1], w = d[2], c = d[3];
  return memory::desc({n, c, h, w}, dt, memory::dims{h * w * c, 1, w * c, c});
}

// w: (kh, kw, Cin/g, Cout) HWIO seen as oneDNN's (O, I, kh, kw), or (G, O/G, I/G, kh, kw).
memory::desc KernelDesc(const ffi::AnyBuffer::Dimensions& d, int64_t groups,
                        memory::data_type dt) {
  const int64_t kh = d[0], kw = d[1], ig = d[2], o = d[3];
  if (groups == 1) {
    return memory::desc({o, ig, kh, kw}, dt, memory::dims{1, o, kw * ig * o, ig * o});
  }
  const int64_t og = o / groups;
  return memory::desc({groups, og, ig, kh, kw}, dt,
                      memory::dims{og, 1, o, kw * ig * o, ig * o});
}

memory::desc AnyLike(const memory::desc& md) {
  return memory::desc(md.get_dims(), md.get_data_type(), memory::format_tag::any);
}

std::string Key(Kind kind, memory::data_type dt, const ffi::AnyBuffer::Dimensions& a,
                const ffi::AnyBuffer::Dimensions& b, const ffi::AnyBuffer::Dimensions& c,
                const Geometry& g) {
  std::ostringstream s;
  s << static_cast<int>(kind) << ':' << static_cast<int>(dt);
  for (const auto* dims : {&a, &b, &c}) {
    s << '|';
    for (int64_t v : *dims) s << v << ',';
  }
  s << '|' << g.sh << ',' << g.sw << ',' << g.dh << ',' << g.dw << ',' << g.pt << ',' << g.pb
    << ',' << g.pl << ',' << g.pr << ',' << g.groups << ',' << g.weights_any;
  return s.str();
}

// Builds the primitive for one problem. x, w, y are the user descriptors of the forward conv.
Entry Build(Kind kind, const memory::desc& x, const memory::desc& w, const memory::desc& y,
            const Geometry& g) {
  auto& eng = Engine();
  const memory::dims strides{g.sh, g.sw}, dilates{g.dh - 1, g.dw - 1};
  const memory::dims pad_l{g.pt, g.pl}, pad_r{g.pb, g.pr};
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const memory::desc w_req = g.weights_any ? AnyLike(w) : w;
  auto fwd = dnnl::convolution_forward::primitive_desc(
      eng, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, x, w_req, y,
      strides, dilates, pad_l, pad_r, attr);
  Entry e;
  e.user_w = w;
  if (kind == Kind::kFwd) {
    e.prim = dnnl::convolution_forward(fwd);
    e.prim_w = fwd.weights_desc();
    e.scratch_bytes = fwd.scratchpad_desc().get_size();
  } else if (kind == Kind::kBwdData) {
    auto pd = dnnl::convolution_backward_data::primitive_desc(
        eng, dnnl::algorithm::convolution_direct, x, w_req, y, strides, dilates, pad_l, pad_r,
        fwd, attr);
    e.prim = dnnl::convolution_backward_data(pd);
    e.prim_w = pd.weights_desc();
    e.scratch_bytes = pd.scratchpad_desc().get_size();
  } else {
    auto pd = dnnl::convolution_backward_weights::primitive_desc(
        eng, dnnl::algorithm::convolution_direct, x, w_req, y, strides, dilates, pad_l, pad_r,
        fwd, attr);
    e.prim = dnnl::convolution_backward_weights(pd);
    e.prim_w = pd.diff_weights_desc();
    e.scratch_bytes = pd.scratchpad_desc().get_size();
  }
  if (e.prim_w != e.user_w) {
    e.reorder = kind == Kind::kBwdWeights
                    ? dnnl::reorder(dnnl::reorder::primitive_desc(eng, e.prim_w, eng, e.user_w))
                    : dnnl::reorder(dnnl::reorder::primitive_desc(eng, e.user_w, eng, e.prim_w));
  }
  return e;
}

const Entry& Lookup(Kind kind, memory::data_type dt, const ffi::AnyBuffer::Dimensions& xd,
                    const ffi::AnyBuffer::Dimensions& wd, const ffi::AnyBuffer::Dimensions& yd,
                    const Geometry& g) {
  static std::mutex mu;
  static std::unordered_map<std::string, std::unique_ptr<Entry>> cache;
  const std::string key = Key(kind, dt, xd, wd, yd, g);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it == cache.end()) {
    auto e = std::make_unique<Entry>(Build(kind, ActivationDesc(xd, dt), KernelDesc(wd, g.groups, dt),
                                           ActivationDesc(yd, dt), g));
    it = cache.emplace(key, std::move(e)).first;
  }
  return *it->second;
}

std::optional<memory::data_type> DataType(ffi::DataType t) {
  if (t == ffi::DataType::F32) return memory::data_type::f32;
  if (t == ffi::DataType::BF16) return memory::data_type::bf16;
  return std::nullopt;
}

// Runs one convolution map. x, w, y are the forward operands (one of them is the output, and
// for the backward maps y holds dy); `out` names which one is written.
ffi::Error Run(Kind kind, ffi::Span<const int64_t> geom, void* x, ffi::AnyBuffer::Dimensions xd,
               void* w, ffi::AnyBuffer::Dimensions wd, void* y, ffi::AnyBuffer::Dimensions yd,
               ffi::DataType dtype) {
  if (geom.size() != 10) return ffi::Error::InvalidArgument("onednn conv: geom must hold 10 ints");
  if (xd.size() != 4 || wd.size() != 4 || yd.size() != 4) {
    return ffi::Error::InvalidArgument("onednn conv: operands must have rank 4");
  }
  auto dt = DataType(dtype);
  if (!dt) return ffi::Error::InvalidArgument("onednn conv: dtype must be float32 or bfloat16");
  const Geometry g{geom[0], geom[1], geom[2], geom[3], geom[4],
                   geom[5], geom[6], geom[7], geom[8], geom[9] != 0};
  try {
    const Entry& e = Lookup(kind, *dt, xd, wd, yd, g);
    auto& eng = Engine();
    thread_local Arena scratch, wbuf;
    memory xm(ActivationDesc(xd, *dt), eng, x), ym(ActivationDesc(yd, *dt), eng, y);
    memory user_w(e.user_w, eng, w);
    memory prim_w = e.reorder ? memory(e.prim_w, eng, wbuf.Get(e.prim_w.get_size())) : user_w;
    memory sp(memory::desc({static_cast<int64_t>(e.scratch_bytes)}, memory::data_type::u8,
                           memory::format_tag::a),
              eng, scratch.Get(e.scratch_bytes + 1));
    dnnl::stream stream(eng);
    if (kind != Kind::kBwdWeights && e.reorder) {
      e.reorder->execute(stream, user_w, prim_w);
    }
    if (kind == Kind::kFwd) {
      e.prim.execute(stream, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, prim_w},
                              {DNNL_ARG_DST, ym}, {DNNL_ARG_SCRATCHPAD, sp}});
    } else if (kind == Kind::kBwdData) {
      e.prim.execute(stream, {{DNNL_ARG_DIFF_SRC, xm}, {DNNL_ARG_WEIGHTS, prim_w},
                              {DNNL_ARG_DIFF_DST, ym}, {DNNL_ARG_SCRATCHPAD, sp}});
    } else {
      e.prim.execute(stream, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_WEIGHTS, prim_w},
                              {DNNL_ARG_DIFF_DST, ym}, {DNNL_ARG_SCRATCHPAD, sp}});
      if (e.reorder) e.reorder->execute(stream, prim_w, user_w);
    }
    stream.wait();
  } catch (const dnnl::error& err) {
    return ffi::Error::Internal(std::string("onednn conv: ") + err.what());
  }
  return ffi::Error::Success();
}

ffi::Error Fwd(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> y,
               ffi::Span<const int64_t> geom) {
  return Run(Kind::kFwd, geom, x.untyped_data(), x.dimensions(), w.untyped_data(),
             w.dimensions(), y->untyped_data(), y->dimensions(), x.element_type());
}

ffi::Error BwdData(ffi::AnyBuffer dy, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> dx,
                   ffi::Span<const int64_t> geom) {
  return Run(Kind::kBwdData, geom, dx->untyped_data(), dx->dimensions(), w.untyped_data(),
             w.dimensions(), dy.untyped_data(), dy.dimensions(), dy.element_type());
}

ffi::Error BwdWeights(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dw,
                      ffi::Span<const int64_t> geom) {
  return Run(Kind::kBwdWeights, geom, x.untyped_data(), x.dimensions(), dw->untyped_data(),
             dw->dimensions(), dy.untyped_data(), dy.dimensions(), x.element_type());
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(cnnjax_onednn_conv_fwd, Fwd,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<ffi::Span<const int64_t>>("geom"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(cnnjax_onednn_conv_bwd_data, BwdData,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<ffi::Span<const int64_t>>("geom"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(cnnjax_onednn_conv_bwd_weights, BwdWeights,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<ffi::Span<const int64_t>>("geom"));

// Creates the CPU engine once, outside any XLA program, so that a missing runtime shows up as
// one message when cnnjax loads the library instead of as a failed custom call. Returns 0, or 1
// with the reason in `message` (at most `size` bytes, NUL-terminated).
extern "C" __attribute__((visibility("default"))) int cnnjax_onednn_probe(char* message,
                                                                           size_t size) {
  try {
    Engine();
    return 0;
  } catch (const dnnl::error& err) {
    std::snprintf(message, size, "%s", err.what());
    return 1;
  }
}

// 1 when this CPU has oneDNN kernels for bfloat16 convolutions (forward and both gradients),
// 0 when not: cnnjax then keeps bfloat16 convolutions on XLA.
extern "C" __attribute__((visibility("default"))) int cnnjax_onednn_supports_bf16() {
  try {
    const int64_t x_dims[4] = {2, 8, 8, 16}, w_dims[4] = {3, 3, 16, 16}, y_dims[4] = {2, 6, 6, 16};
    const ffi::AnyBuffer::Dimensions xd(x_dims, 4), wd(w_dims, 4), yd(y_dims, 4);
    const Geometry g{1, 1, 1, 1, 0, 0, 0, 0, 1, true};
    for (Kind kind : {Kind::kFwd, Kind::kBwdData, Kind::kBwdWeights}) {
      Build(kind, ActivationDesc(xd, memory::data_type::bf16),
            KernelDesc(wd, 1, memory::data_type::bf16), ActivationDesc(yd, memory::data_type::bf16),
            g);
    }
    return 1;
  } catch (const dnnl::error&) {
    return 0;
  }
}
