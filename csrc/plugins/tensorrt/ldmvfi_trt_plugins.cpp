// TensorRT IPluginV3 plugins over the ldmvfi_fast C API (see ldmvfi_trt_plugins.h).
#include "ldmvfi_trt_plugins.h"

#include <ldmvfi_fast/c_api.h>

#include <cstring>

namespace ldmvfi_fast {
namespace trt {
namespace {

using nvinfer1::DataType;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldType;
using nvinfer1::TensorFormat;

constexpr char const* kVersion = "1";
constexpr char const* kNamespace = "";

thread_local std::string gLastError;
nvinfer1::ILoggerFinder* gLoggerFinder = nullptr;

void reportError(std::string const& msg) noexcept {
    try {
        gLastError = msg;
        nvinfer1::ILogger* logger = gLoggerFinder ? gLoggerFinder->findLogger() : nullptr;
        if (logger) {
            logger->log(nvinfer1::ILogger::Severity::kERROR, ("ldmvfi_fast plugin: " + msg).c_str());
        }
    } catch (...) {
    }
}

bool isFloating(DataType t) noexcept { return t == DataType::kFLOAT || t == DataType::kHALF || t == DataType::kBF16; }

// int32 sizes for the C API; false (and an error) when a dimension does not fit
bool toInt(int64_t v, int& out, char const* what) noexcept {
    if (v < 0 || v > INT32_MAX) {
        reportError(std::string("dimension ") + what + " out of range");
        return false;
    }
    out = static_cast<int>(v);
    return true;
}

template <typename T>
T const* in(void const* const* inputs, int i) noexcept {
    return static_cast<T const*>(inputs[i]);
}

int runDSepConv(nvinfer1::PluginTensorDesc const* d, void const* const* x, void* y, cudaStream_t s) noexcept {
    int B, C, K, H, W;
    if (!toInt(d[0].dims.d[0], B, "B") || !toInt(d[0].dims.d[1], C, "C") || !toInt(d[1].dims.d[1], K, "K") ||
        !toInt(d[1].dims.d[2], H, "H") || !toInt(d[1].dims.d[3], W, "W")) {
        return 1;
    }
    switch (d[0].type) {
    case DataType::kFLOAT:
        return ldmvfi_dsepconv_forward_f32(in<float>(x, 0), in<float>(x, 1), in<float>(x, 2), in<float>(x, 3),
                                           in<float>(x, 4), in<float>(x, 5), static_cast<float*>(y), B, C, K, H, W, s);
    case DataType::kHALF:
        return ldmvfi_dsepconv_forward_f16(in<ldmvfi_f16>(x, 0), in<ldmvfi_f16>(x, 1), in<ldmvfi_f16>(x, 2),
                                           in<ldmvfi_f16>(x, 3), in<ldmvfi_f16>(x, 4), in<ldmvfi_f16>(x, 5),
                                           static_cast<ldmvfi_f16*>(y), B, C, K, H, W, s);
    case DataType::kBF16:
        return ldmvfi_dsepconv_forward_bf16(in<ldmvfi_bf16>(x, 0), in<ldmvfi_bf16>(x, 1), in<ldmvfi_bf16>(x, 2),
                                            in<ldmvfi_bf16>(x, 3), in<ldmvfi_bf16>(x, 4), in<ldmvfi_bf16>(x, 5),
                                            static_cast<ldmvfi_bf16*>(y), B, C, K, H, W, s);
    default:
        return static_cast<int>(cudaErrorNotSupported);
    }
}

int runDecoderOutput(nvinfer1::PluginTensorDesc const* d, void const* const* x, void* y, cudaStream_t s) noexcept {
    int B, C, K, H, W;
    if (!toInt(d[0].dims.d[0], B, "B") || !toInt(d[0].dims.d[1], C, "C") || !toInt(d[2].dims.d[1], K, "K") ||
        !toInt(d[0].dims.d[2], H, "H") || !toInt(d[0].dims.d[3], W, "W")) {
        return 1;
    }
#define LDMVFI_DEC_ARGS(T)                                                                                      \
    in<T>(x, 0), in<T>(x, 1), in<T>(x, 2), in<T>(x, 3), in<T>(x, 4), in<T>(x, 5), in<T>(x, 6), in<T>(x, 7),   \
        in<T>(x, 8), in<T>(x, 9), in<T>(x, 10), in<T>(x, 11), static_cast<T*>(y), B, C, K, H, W, s
    switch (d[0].type) {
    case DataType::kFLOAT: return ldmvfi_decoder_output_f32(LDMVFI_DEC_ARGS(float));
    case DataType::kHALF: return ldmvfi_decoder_output_f16(LDMVFI_DEC_ARGS(ldmvfi_f16));
    case DataType::kBF16: return ldmvfi_decoder_output_bf16(LDMVFI_DEC_ARGS(ldmvfi_bf16));
    default: return static_cast<int>(cudaErrorNotSupported);
    }
#undef LDMVFI_DEC_ARGS
}

int runAttention(nvinfer1::PluginTensorDesc const* d, void const* const* x, void* y, AttentionParams const& p,
                 cudaStream_t s) noexcept {
    int B, H, W, C;
    if (!toInt(d[0].dims.d[0], B, "B") || !toInt(d[0].dims.d[1], H, "H") || !toInt(d[0].dims.d[2], W, "W") ||
        !toInt(d[0].dims.d[3], C, "C")) {
        return 1;
    }
    float const* bias = in<float>(x, 3);
    switch (d[0].type) {
    case DataType::kFLOAT:
        return ldmvfi_maxvit_attention_f32(in<float>(x, 0), in<float>(x, 1), in<float>(x, 2), bias,
                                           static_cast<float*>(y), B, H, W, C, p.window, p.grid, p.numHeads,
                                           p.scale, s);
    case DataType::kHALF:
        return ldmvfi_maxvit_attention_f16(in<ldmvfi_f16>(x, 0), in<ldmvfi_f16>(x, 1), in<ldmvfi_f16>(x, 2), bias,
                                           static_cast<ldmvfi_f16*>(y), B, H, W, C, p.window, p.grid, p.numHeads,
                                           p.scale, s);
    case DataType::kBF16:
        return ldmvfi_maxvit_attention_bf16(in<ldmvfi_bf16>(x, 0), in<ldmvfi_bf16>(x, 1), in<ldmvfi_bf16>(x, 2),
                                            bias, static_cast<ldmvfi_bf16*>(y), B, H, W, C, p.window, p.grid,
                                            p.numHeads, p.scale, s);
    default: return static_cast<int>(cudaErrorNotSupported);
    }
}

// the serialized fields of an attention plugin, pointing into `p`
std::vector<PluginField> attentionFields(AttentionParams* p) {
    return {PluginField("window", p ? &p->window : nullptr, PluginFieldType::kINT32, 1),
            PluginField("grid", p ? &p->grid : nullptr, PluginFieldType::kINT32, 1),
            PluginField("num_heads", p ? &p->numHeads : nullptr, PluginFieldType::kINT32, 1),
            PluginField("scale", p ? &p->scale : nullptr, PluginFieldType::kFLOAT32, 1)};
}

}  // namespace

char const* opName(OpKind kind) noexcept {
    switch (kind) {
    case OpKind::kDSepConv: return "DSepConv";
    case OpKind::kDecoderOutput: return "DecoderOutput";
    case OpKind::kMaxViTAttention: return "MaxViTAttention";
    }
    return "";
}

int32_t opInputs(OpKind kind) noexcept {
    switch (kind) {
    case OpKind::kDSepConv: return 6;
    case OpKind::kDecoderOutput: return 12;
    case OpKind::kMaxViTAttention: return 4;
    }
    return 0;
}

char const* lastError() noexcept { return gLastError.c_str(); }

// ------------------------------------------------------------------ plugin

LdmvfiPlugin::LdmvfiPlugin(OpKind kind, AttentionParams params) noexcept : mKind(kind), mParams(params) {}

nvinfer1::IPluginCapability* LdmvfiPlugin::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept {
    switch (type) {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

nvinfer1::IPluginV3* LdmvfiPlugin::clone() noexcept {
    try {
        return new LdmvfiPlugin(mKind, mParams);
    } catch (...) {
        reportError("out of host memory in clone()");
        return nullptr;
    }
}

char const* LdmvfiPlugin::getPluginName() const noexcept { return opName(mKind); }
char const* LdmvfiPlugin::getPluginVersion() const noexcept { return kVersion; }
char const* LdmvfiPlugin::getPluginNamespace() const noexcept { return kNamespace; }

int32_t LdmvfiPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                      nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept {
    if (nbInputs != opInputs(mKind) || nbOutputs != 1) {
        reportError(std::string(opName(mKind)) + ": wrong number of inputs/outputs");
        return 1;
    }
    int32_t const rank = 4;
    for (int32_t i = 0; i < nbInputs; ++i) {
        bool const table = mKind == OpKind::kMaxViTAttention && i == 3;
        if (in[i].desc.dims.nbDims != (table ? 2 : rank)) {
            reportError(std::string(opName(mKind)) + ": input " + std::to_string(i) + " has the wrong rank");
            return 1;
        }
    }
    (void)out;
    return 0;
}

int32_t LdmvfiPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                         int32_t nbInputs) const noexcept {
    if (nbOutputs != 1 || nbInputs < 1) {
        return 1;
    }
    outputTypes[0] = inputTypes[0];
    return 0;
}

int32_t LdmvfiPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                                      nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/,
                                      nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                                      nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept {
    if (nbInputs != opInputs(mKind) || nbOutputs != 1) {
        reportError(std::string(opName(mKind)) + ": wrong number of inputs/outputs");
        return 1;
    }
    switch (mKind) {
    case OpKind::kDSepConv:
        // (B, C) of the padded input, (H, W) of the kernels
        outputs[0].nbDims = 4;
        outputs[0].d[0] = inputs[0].d[0];
        outputs[0].d[1] = inputs[0].d[1];
        outputs[0].d[2] = inputs[1].d[2];
        outputs[0].d[3] = inputs[1].d[3];
        return 0;
    case OpKind::kDecoderOutput:  // the frames' shape
    case OpKind::kMaxViTAttention:  // the queries' shape
        outputs[0] = inputs[0];
        return 0;
    }
    return 1;
}

bool LdmvfiPlugin::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
                                             int32_t nbInputs, int32_t nbOutputs) noexcept {
    if (pos < 0 || pos >= nbInputs + nbOutputs) {
        return false;
    }
    nvinfer1::PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR) {
        return false;
    }
    if (mKind == OpKind::kMaxViTAttention && pos == 3) {
        return d.type == DataType::kFLOAT;  // the bias table is float32 in every precision
    }
    if (pos == 0) {
        return isFloating(d.type);
    }
    return d.type == inOut[0].desc.type;  // one type for every other tensor
}

int32_t LdmvfiPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                                    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept {
    (void)in;
    (void)out;
    return nbInputs == opInputs(mKind) && nbOutputs == 1 ? 0 : 1;
}

int32_t LdmvfiPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
                              nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs,
                              void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept {
    int rc = 0;
    switch (mKind) {
    case OpKind::kDSepConv: rc = runDSepConv(inputDesc, inputs, outputs[0], stream); break;
    case OpKind::kDecoderOutput: rc = runDecoderOutput(inputDesc, inputs, outputs[0], stream); break;
    case OpKind::kMaxViTAttention: rc = runAttention(inputDesc, inputs, outputs[0], mParams, stream); break;
    }
    if (rc != 0) {
        reportError(std::string(opName(mKind)) + ": " + ldmvfi_error_string(rc));
    }
    return rc;
}

nvinfer1::IPluginV3* LdmvfiPlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept {
    return clone();  // no per-context resources
}

nvinfer1::PluginFieldCollection const* LdmvfiPlugin::getFieldsToSerialize() noexcept {
    try {
        mFields = mKind == OpKind::kMaxViTAttention ? attentionFields(&mParams) : std::vector<PluginField>{};
    } catch (...) {
        mFields.clear();
    }
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
    return &mFieldCollection;
}

// ------------------------------------------------------------------ creator

LdmvfiPluginCreator::LdmvfiPluginCreator(OpKind kind) noexcept : mKind(kind) {
    try {
        if (kind == OpKind::kMaxViTAttention) {
            mFields = attentionFields(nullptr);
        }
    } catch (...) {
    }
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

nvinfer1::IPluginV3* LdmvfiPluginCreator::createPlugin(char const* /*name*/, nvinfer1::PluginFieldCollection const* fc,
                                                       nvinfer1::TensorRTPhase /*phase*/) noexcept {
    AttentionParams p;
    if (mKind == OpKind::kMaxViTAttention) {
        bool seen[4] = {false, false, false, false};
        for (int32_t i = 0; fc && i < fc->nbFields; ++i) {
            PluginField const& f = fc->fields[i];
            if (!f.name || !f.data || f.length < 1) {
                continue;
            }
            // ONNX integer attributes may arrive as int32 or int64, floats as float32
            auto asInt = [&f](int32_t& dst) {
                if (f.type == PluginFieldType::kINT32) {
                    dst = *static_cast<int32_t const*>(f.data);
                    return true;
                }
                if (f.type == PluginFieldType::kINT64) {
                    dst = static_cast<int32_t>(*static_cast<int64_t const*>(f.data));
                    return true;
                }
                return false;
            };
            if (!std::strcmp(f.name, "window")) {
                seen[0] = asInt(p.window);
            } else if (!std::strcmp(f.name, "grid")) {
                seen[1] = asInt(p.grid);
            } else if (!std::strcmp(f.name, "num_heads")) {
                seen[2] = asInt(p.numHeads);
            } else if (!std::strcmp(f.name, "scale") && f.type == PluginFieldType::kFLOAT32) {
                p.scale = *static_cast<float const*>(f.data);
                seen[3] = true;
            }
        }
        if (!(seen[0] && seen[1] && seen[2] && seen[3])) {
            reportError("MaxViTAttention needs the fields window, grid, num_heads (int) and scale (float32)");
            return nullptr;
        }
        if (p.window < 1 || p.window > 8 || (p.grid != 0 && p.grid != 1) || p.numHeads < 1) {
            reportError("MaxViTAttention: window must be 1..8, grid 0 or 1, num_heads >= 1");
            return nullptr;
        }
    }
    try {
        return new LdmvfiPlugin(mKind, p);
    } catch (...) {
        reportError("out of host memory in createPlugin()");
        return nullptr;
    }
}

nvinfer1::PluginFieldCollection const* LdmvfiPluginCreator::getFieldNames() noexcept { return &mFieldCollection; }
char const* LdmvfiPluginCreator::getPluginName() const noexcept { return opName(mKind); }
char const* LdmvfiPluginCreator::getPluginVersion() const noexcept { return kVersion; }
char const* LdmvfiPluginCreator::getPluginNamespace() const noexcept { return kNamespace; }

}  // namespace trt
}  // namespace ldmvfi_fast

extern "C" LDMVFI_TRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    using ldmvfi_fast::trt::LdmvfiPluginCreator;
    using ldmvfi_fast::trt::OpKind;
    static LdmvfiPluginCreator dsep(OpKind::kDSepConv);
    static LdmvfiPluginCreator dec(OpKind::kDecoderOutput);
    static LdmvfiPluginCreator attn(OpKind::kMaxViTAttention);
    static nvinfer1::IPluginCreatorInterface* creators[] = {&dsep, &dec, &attn};
    nbCreators = 3;
    return creators;
}

extern "C" LDMVFI_TRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
    ldmvfi_fast::trt::gLoggerFinder = finder;
}
