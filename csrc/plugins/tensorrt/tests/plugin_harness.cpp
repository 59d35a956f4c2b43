// Host-only checks of the TensorRT plugins, without TensorRT's libraries or a GPU.
//
// Links ldmvfi_trt_plugins.cpp against TensorRT's public headers only (the plugin code uses
// no libnvinfer symbol) and against STUBS of the ldmvfi_fast C API defined below, which
// record the sizes and the entry point each enqueue() calls. Checks: getCreators, the
// creators' names/fields, createPlugin field parsing and refusals, capability interfaces,
// clone, output shapes (which input dimension each output dimension comes from), output
// types, supportsFormatCombination, serialized fields, and enqueue's sizes and dtype dispatch.
//
//   g++ -std=c++17 -isystem $TENSORRT_INCLUDE_DIR -isystem $CUDA_INCLUDE -Icsrc/include
//       csrc/plugins/tensorrt/ldmvfi_trt_plugins.cpp csrc/plugins/tensorrt/tests/plugin_harness.cpp -o h && ./h
// Prints "ok N checks" and exits 0, or prints each failed check and exits 1.
#include "../ldmvfi_trt_plugins.h"

#include <ldmvfi_fast/c_api.h>

#include <cstdio>
#include <cstring>
#include <string>

using namespace nvinfer1;
using ldmvfi_fast::trt::LdmvfiPlugin;

// ------------------------------------------------------------------ C API stubs
namespace {
std::string gCalled;
int gB, gC, gK, gH, gW, gWindow, gGrid, gHeads;
float gScale;
void const* gFirst;
void* gOut;
cudaStream_t gStream;

int record(char const* fn, void const* first, void* out, int B, int C, int K, int H, int W, cudaStream_t s) {
    gCalled = fn;
    gFirst = first;
    gOut = out;
    gB = B, gC = C, gK = K, gH = H, gW = W, gStream = s;
    return 0;
}
int recordAttn(char const* fn, void const* q, void* out, int B, int H, int W, int C, int window, int grid, int heads,
               float scale, cudaStream_t s) {
    gWindow = window, gGrid = grid, gHeads = heads, gScale = scale;
    return record(fn, q, out, B, C, 0, H, W, s);
}
}  // namespace

extern "C" {
int ldmvfi_api_version(void) { return 1 << 16; }
char const* ldmvfi_error_string(int code) { return code ? "stub error" : "no error"; }
#define DSEP(name, T)                                                                                         \
    int name(const T* i, const T*, const T*, const T*, const T*, const T*, T* o, int B, int C, int K, int H, \
             int W, cudaStream_t s) {                                                                        \
        return record(#name, i, o, B, C, K, H, W, s);                                                        \
    }
DSEP(ldmvfi_dsepconv_forward_f32, float)
DSEP(ldmvfi_dsepconv_forward_f16, ldmvfi_f16)
DSEP(ldmvfi_dsepconv_forward_bf16, ldmvfi_bf16)
#define DEC(name, T)                                                                                             \
    int name(const T* f0, const T*, const T*, const T*, const T*, const T*, const T*, const T*, const T*,       \
             const T*, const T*, const T*, T* o, int B, int C, int K, int H, int W, cudaStream_t s) {            \
        return record(#name, f0, o, B, C, K, H, W, s);                                                          \
    }
DEC(ldmvfi_decoder_output_f32, float)
DEC(ldmvfi_decoder_output_f16, ldmvfi_f16)
DEC(ldmvfi_decoder_output_bf16, ldmvfi_bf16)
#define ATTN(name, T)                                                                                             \
    int name(const T* q, const T*, const T*, const float*, T* o, int B, int H, int W, int C, int window, int grid, \
             int heads, float scale, cudaStream_t s) {                                                            \
        return recordAttn(#name, q, o, B, H, W, C, window, grid, heads, scale, s);                               \
    }
ATTN(ldmvfi_maxvit_attention_f32, float)
ATTN(ldmvfi_maxvit_attention_f16, ldmvfi_f16)
ATTN(ldmvfi_maxvit_attention_bf16, ldmvfi_bf16)
}

// ------------------------------------------------------------------ checks
namespace {
int gChecks = 0, gFailed = 0;
void check(bool ok, char const* what, int line) {
    ++gChecks;
    if (!ok) {
        ++gFailed;
        std::printf("FAILED line %d: %s\n", line, what);
    }
}
#define CHECK(x) check((x), #x, __LINE__)

IDimensionExpr const* sym(int i) { return reinterpret_cast<IDimensionExpr const*>(0x1000 + 16 * i); }

DimsExprs exprs(int rank, int base) {
    DimsExprs d{};
    d.nbDims = rank;
    for (int i = 0; i < rank; ++i) d.d[i] = sym(base + i);
    return d;
}

PluginTensorDesc desc(std::initializer_list<int64_t> dims, DataType t) {
    PluginTensorDesc d{};
    d.dims.nbDims = static_cast<int32_t>(dims.size());
    int i = 0;
    for (int64_t v : dims) d.dims.d[i++] = v;
    d.type = t;
    d.format = TensorFormat::kLINEAR;
    return d;
}

IPluginCreatorV3One* creator(char const* name) {
    int32_t n = 0;
    IPluginCreatorInterface* const* cs = getCreators(n);
    for (int32_t i = 0; i < n; ++i) {
        auto* c = static_cast<IPluginCreatorV3One*>(cs[i]);
        if (!std::strcmp(c->getPluginName(), name)) return c;
    }
    return nullptr;
}

LdmvfiPlugin* make(char const* name, PluginFieldCollection const* fc = nullptr) {
    PluginFieldCollection empty{};
    IPluginV3* p = creator(name)->createPlugin(name, fc ? fc : &empty, TensorRTPhase::kBUILD);
    return static_cast<LdmvfiPlugin*>(p);
}
}  // namespace

int main() {
    alignas(64) static char ebStorage[256] = {};
    auto& eb = *reinterpret_cast<IExprBuilder*>(ebStorage);  // never called by the plugins
    auto* stream = reinterpret_cast<cudaStream_t>(0x5);

    // creators
    int32_t n = 0;
    IPluginCreatorInterface* const* cs = getCreators(n);
    CHECK(n == 3 && cs != nullptr);
    for (char const* name : {"DSepConv", "DecoderOutput", "MaxViTAttention"}) {
        IPluginCreatorV3One* c = creator(name);
        CHECK(c != nullptr);
        if (!c) return 1;
        CHECK(!std::strcmp(c->getPluginVersion(), "1") && !std::strcmp(c->getPluginNamespace(), ""));
        CHECK(std::string(c->getInterfaceInfo().kind) == "PLUGIN CREATOR_V3ONE");
    }
    CHECK(creator("DSepConv")->getFieldNames()->nbFields == 0);
    CHECK(creator("MaxViTAttention")->getFieldNames()->nbFields == 4);

    // ---- DSepConv
    LdmvfiPlugin* d = make("DSepConv");
    CHECK(d != nullptr);
    CHECK(d->getCapabilityInterface(PluginCapabilityType::kCORE) == static_cast<IPluginV3OneCore*>(d));
    CHECK(d->getCapabilityInterface(PluginCapabilityType::kBUILD) == static_cast<IPluginV3OneBuild*>(d));
    CHECK(d->getCapabilityInterface(PluginCapabilityType::kRUNTIME) == static_cast<IPluginV3OneRuntime*>(d));
    CHECK(!std::strcmp(static_cast<IPluginV3OneCore*>(d)->getPluginName(), "DSepConv"));
    {
        DimsExprs ins[6] = {exprs(4, 0), exprs(4, 10), exprs(4, 20), exprs(4, 30), exprs(4, 40), exprs(4, 50)};
        DimsExprs out{};
        CHECK(d->getOutputShapes(ins, 6, nullptr, 0, &out, 1, eb) == 0);
        // (B, C) of the padded input, (H, W) of the vertical kernels
        CHECK(out.nbDims == 4 && out.d[0] == sym(0) && out.d[1] == sym(1) && out.d[2] == sym(12) &&
              out.d[3] == sym(13));
        CHECK(d->getOutputShapes(ins, 5, nullptr, 0, &out, 1, eb) != 0);
        DataType ot{};
        DataType it[6] = {DataType::kHALF, DataType::kHALF, DataType::kHALF,
                          DataType::kHALF, DataType::kHALF, DataType::kHALF};
        CHECK(d->getOutputDataTypes(&ot, 1, it, 6) == 0 && ot == DataType::kHALF);
        DynamicPluginTensorDesc io[7]{};
        for (auto& x : io) x.desc = desc({1, 3, 8, 8}, DataType::kHALF);
        for (int pos = 0; pos < 7; ++pos) CHECK(d->supportsFormatCombination(pos, io, 6, 1));
        io[6].desc.type = DataType::kFLOAT;  // mixed types refused
        CHECK(!d->supportsFormatCombination(6, io, 6, 1));
        io[0].desc.type = DataType::kINT32;
        CHECK(!d->supportsFormatCombination(0, io, 6, 1));
        io[0].desc = desc({1, 3, 8, 8}, DataType::kFLOAT);
        io[0].desc.format = TensorFormat::kCHW32;
        CHECK(!d->supportsFormatCombination(0, io, 6, 1));
        CHECK(!d->supportsFormatCombination(7, io, 6, 1));

        // enqueue: B=2, C=3, K=5, H=7, W=9; input padded to 11x13
        PluginTensorDesc in[6] = {desc({2, 3, 11, 13}, DataType::kFLOAT), desc({2, 5, 7, 9}, DataType::kFLOAT),
                                  desc({2, 5, 7, 9}, DataType::kFLOAT), desc({2, 25, 7, 9}, DataType::kFLOAT),
                                  desc({2, 25, 7, 9}, DataType::kFLOAT), desc({2, 25, 7, 9}, DataType::kFLOAT)};
        PluginTensorDesc o = desc({2, 3, 7, 9}, DataType::kFLOAT);
        float buf[7];
        void const* ptrs[6] = {&buf[0], &buf[1], &buf[2], &buf[3], &buf[4], &buf[5]};
        void* outs[1] = {&buf[6]};
        CHECK(d->enqueue(in, &o, ptrs, outs, nullptr, stream) == 0);
        CHECK(gCalled == "ldmvfi_dsepconv_forward_f32" && gB == 2 && gC == 3 && gK == 5 && gH == 7 && gW == 9);
        CHECK(gFirst == &buf[0] && gOut == &buf[6] && gStream == stream);
        for (auto& x : in) x.type = DataType::kBF16;
        CHECK(d->enqueue(in, &o, ptrs, outs, nullptr, stream) == 0 && gCalled == "ldmvfi_dsepconv_forward_bf16");
        for (auto& x : in) x.type = DataType::kHALF;
        CHECK(d->enqueue(in, &o, ptrs, outs, nullptr, stream) == 0 && gCalled == "ldmvfi_dsepconv_forward_f16");
        CHECK(d->getFieldsToSerialize()->nbFields == 0);
    }
    IPluginV3* dc = d->clone();
    CHECK(dc != nullptr && static_cast<LdmvfiPlugin*>(dc)->kind() == ldmvfi_fast::trt::OpKind::kDSepConv);
    delete dc;
    delete d;

    // ---- DecoderOutput
    LdmvfiPlugin* dec = make("DecoderOutput");
    {
        DimsExprs ins[12];
        for (int i = 0; i < 12; ++i) ins[i] = exprs(4, 10 * i);
        DimsExprs out{};
        CHECK(dec->getOutputShapes(ins, 12, nullptr, 0, &out, 1, eb) == 0);
        CHECK(out.nbDims == 4 && out.d[0] == sym(0) && out.d[1] == sym(1) && out.d[2] == sym(2) && out.d[3] == sym(3));
        PluginTensorDesc in[12];
        in[0] = in[1] = in[11] = desc({1, 3, 6, 10}, DataType::kHALF);  // frames, residual
        in[2] = in[3] = in[6] = in[7] = desc({1, 3, 6, 10}, DataType::kHALF);  // vertical/horizontal, K = 3
        in[4] = in[5] = in[8] = in[9] = in[10] = desc({1, 9, 6, 10}, DataType::kHALF);
        PluginTensorDesc o = desc({1, 3, 6, 10}, DataType::kHALF);
        uint16_t buf[13];
        void const* ptrs[12];
        for (int i = 0; i < 12; ++i) ptrs[i] = &buf[i];
        void* outs[1] = {&buf[12]};
        CHECK(dec->enqueue(in, &o, ptrs, outs, nullptr, stream) == 0);
        CHECK(gCalled == "ldmvfi_decoder_output_f16" && gB == 1 && gC == 3 && gK == 3 && gH == 6 && gW == 10);
        CHECK(gFirst == &buf[0] && gOut == &buf[12]);
    }
    delete dec;

    // ---- MaxViTAttention
    {
        int32_t window = 8, heads = 4;
        int64_t grid64 = 1;
        float scale = 0.125F;
        PluginField f[4] = {PluginField("window", &window, PluginFieldType::kINT32, 1),
                            PluginField("grid", &grid64, PluginFieldType::kINT64, 1),  // ONNX ints may be int64
                            PluginField("num_heads", &heads, PluginFieldType::kINT32, 1),
                            PluginField("scale", &scale, PluginFieldType::kFLOAT32, 1)};
        PluginFieldCollection fc{4, f};
        LdmvfiPlugin* a = make("MaxViTAttention", &fc);
        CHECK(a != nullptr);
        if (!a) return 1;
        CHECK(a->params().window == 8 && a->params().grid == 1 && a->params().numHeads == 4 &&
              a->params().scale == 0.125F);
        PluginFieldCollection const* ser = a->getFieldsToSerialize();
        CHECK(ser->nbFields == 4 && !std::strcmp(ser->fields[0].name, "window") &&
              *static_cast<int32_t const*>(ser->fields[0].data) == 8 &&
              *static_cast<float const*>(ser->fields[3].data) == 0.125F);
        // the serialized fields recreate the same plugin (engine deserialization)
        LdmvfiPlugin* again = static_cast<LdmvfiPlugin*>(
            creator("MaxViTAttention")->createPlugin("MaxViTAttention", ser, TensorRTPhase::kRUNTIME));
        CHECK(again && again->params().grid == 1 && again->params().numHeads == 4);
        delete again;
        DynamicPluginTensorDesc io[5]{};
        for (auto& x : io) x.desc = desc({1, 16, 16, 128}, DataType::kBF16);
        io[3].desc = desc({225, 4}, DataType::kBF16);
        CHECK(!a->supportsFormatCombination(3, io, 4, 1));  // bias table must be float32
        io[3].desc.type = DataType::kFLOAT;
        for (int pos = 0; pos < 5; ++pos) CHECK(a->supportsFormatCombination(pos, io, 4, 1));
        PluginTensorDesc in[4] = {desc({2, 16, 24, 128}, DataType::kBF16), desc({2, 16, 24, 128}, DataType::kBF16),
                                  desc({2, 16, 24, 128}, DataType::kBF16), desc({225, 4}, DataType::kFLOAT)};
        PluginTensorDesc o = desc({2, 16, 24, 128}, DataType::kBF16);
        uint16_t buf[5];
        void const* ptrs[4] = {&buf[0], &buf[1], &buf[2], &buf[3]};
        void* outs[1] = {&buf[4]};
        CHECK(a->enqueue(in, &o, ptrs, outs, nullptr, stream) == 0);
        CHECK(gCalled == "ldmvfi_maxvit_attention_bf16" && gB == 2 && gH == 16 && gW == 24 && gC == 128 &&
              gWindow == 8 && gGrid == 1 && gHeads == 4 && gScale == 0.125F);
        delete a;
        // refusals: a missing field, a window over 8
        PluginFieldCollection three{3, f};
        CHECK(make("MaxViTAttention", &three) == nullptr);
        CHECK(std::string(ldmvfi_fast::trt::lastError()).find("num_heads") != std::string::npos);
        window = 9;
        CHECK(make("MaxViTAttention", &fc) == nullptr);
    }

    if (gFailed) {
        std::printf("%d of %d checks failed\n", gFailed, gChecks);
        return 1;
    }
    std::printf("ok %d checks\n", gChecks);
    return 0;
}
