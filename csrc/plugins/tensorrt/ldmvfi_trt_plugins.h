/* TensorRT plugins (IPluginV3) for the ldmvfi_fast ONNX-domain ops, over the C API of
 * csrc/include/ldmvfi_fast/c_api.h (library ldmvfi_fast_kernels).
 *
 *   DSepConv        inputs input (B,C,H+K-1,W+K-1), vertical (B,K,H,W), horizontal (B,K,H,W),
 *                   offset_x, offset_y, mask (B,K*K,H,W)            -> output (B,C,H,W)
 *   DecoderOutput   inputs frame0, frame1 (B,C,H,W), vertical0, horizontal0 (B,K,H,W),
 *                   offset_x0, offset_y0 (B,K*K,H,W), vertical1, horizontal1, offset_x1,
 *                   offset_y1, mask (B,K*K,H,W), residual (B,C,H,W)  -> output (B,C,H,W)
 *   MaxViTAttention inputs q, k, v (B,H,W,C) channel-last, bias_table ((2w-1)^2, heads) float32;
 *                   fields window, grid, num_heads (int32), scale (float32) -> output (B,H,W,C)
 *
 * Plugin names are the ONNX op types, version "1", namespace "" (what TensorRT's ONNX
 * parser looks up for a node it does not know). Tensors: linear (row-major) layout, float32,
 * float16 or bfloat16, all of one type (the attention's bias table is always float32).
 *
 * The library exports getCreators() (and setLoggerFinder()), so it is loaded with
 * IPluginRegistry::loadLibrary (Python: trt.get_plugin_registry().load_library(path)); it
 * does not register itself when dlopen'ed.
 */
#ifndef LDMVFI_FAST_TRT_PLUGINS_H_
#define LDMVFI_FAST_TRT_PLUGINS_H_

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ldmvfi_fast {
namespace trt {

enum class OpKind : int32_t { kDSepConv = 0, kDecoderOutput = 1, kMaxViTAttention = 2 };

//! Name (ONNX op type), number of inputs.
char const* opName(OpKind kind) noexcept;
int32_t opInputs(OpKind kind) noexcept;

struct AttentionParams {
    int32_t window{8};
    int32_t grid{0};
    int32_t numHeads{1};
    float scale{1.0F};
};

class LdmvfiPlugin final : public nvinfer1::IPluginV3,
                           public nvinfer1::IPluginV3OneCore,
                           public nvinfer1::IPluginV3OneBuild,
                           public nvinfer1::IPluginV3OneRuntime {
public:
    LdmvfiPlugin(OpKind kind, AttentionParams params) noexcept;
    ~LdmvfiPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
                               nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                            nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs,
                            nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                            nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override { return 1; }

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                          nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                    void const* const* inputs, void* const* outputs, void* workspace,
                    cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    OpKind kind() const noexcept { return mKind; }
    AttentionParams const& params() const noexcept { return mParams; }

private:
    OpKind mKind;
    AttentionParams mParams;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class LdmvfiPluginCreator final : public nvinfer1::IPluginCreatorV3One {
public:
    explicit LdmvfiPluginCreator(OpKind kind) noexcept;
    ~LdmvfiPluginCreator() override = default;

    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                      nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    OpKind mKind;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

//! Last error text of this library (thread-local; empty when none).
char const* lastError() noexcept;

}  // namespace trt
}  // namespace ldmvfi_fast

// TensorRT's TENSORRTAPI exports only when building TensorRT itself: our own macro
#if defined(_WIN32)
#define LDMVFI_TRT_EXPORT __declspec(dllexport)
#else
#define LDMVFI_TRT_EXPORT __attribute__((visibility("default")))
#endif

extern "C" {
//! The creators of this library (for IPluginRegistry::loadLibrary).
LDMVFI_TRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
//! Logger finder given by TensorRT when the library is loaded (errors are logged through it).
LDMVFI_TRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder);
}

#endif  // LDMVFI_FAST_TRT_PLUGINS_H_
