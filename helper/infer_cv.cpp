// SPDX-License-Identifier: AGPL-3.0-or-later
//
// The only C++ in the project: OpenCV DNN behind helper/infer.h.
// Every entry point catches every exception; nothing crosses into C.

#include "infer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/dnn.hpp>

// onnx_crops: crops per forward pass.
constexpr size_t INFER_CROP_BATCH = 2;

struct infer_net {
    cv::dnn::Net net;
};

struct infer_detector {
    cv::dnn::Net net;
    std::vector<cv::String> out_names;
    infer_detector_params params; // the paths are not kept (set to nullptr)

    // Reused from frame to frame so that a steady stream allocates nothing new.
    cv::Mat blob;
    std::vector<cv::Mat> outs;
    std::vector<infer_detection> candidates; // above the threshold, before NMS
    std::vector<cv::Rect2d> class_boxes;     // one class at a time, for NMSBoxes
    std::vector<float> class_scores;
    std::vector<int> class_index;            // into candidates
    std::vector<int> keep;
    std::vector<infer_detection> found;
    bool has_signature = false;              // onnx_crops: a "signature" output
    std::vector<cv::Mat> crops;              // onnx_crops: views into the frame
    std::vector<cv::Mat> batch;              // onnx_crops: the crops of one forward pass
    std::vector<infer_detection> crop_boxes; // onnx_crops: each crop's box
    float top_score = 0.0f;                  // the last run's best confidence, threshold or not
};

namespace {

// The best confidence of the run so far, whether or not it passes the
// threshold (NaN never does), capped at 1 as detections are.
void note_score(infer_detector *det, float confidence)
{
    if (confidence > det->top_score)
        det->top_score = confidence > 1.0f ? 1.0f : confidence;
}

void set_error(char *reterr, size_t reterr_len, const char *what, const char *detail)
{
    if (!reterr || reterr_len == 0)
        return;
    std::snprintf(reterr, reterr_len, "%s: %s", what, detail ? detail : "unknown error");
}

bool valid_unit(float value)
{
    return std::isfinite(value) && value >= 0.0f && value <= 1.0f;
}

// Checks the parameters; on failure writes the reason and returns false.
bool check_params(const infer_detector_params *p, char *reterr, size_t reterr_len)
{
    const char *why = nullptr;

    if (p->model_type == INFER_MODEL_DARKNET) {
        if (!p->cfg_path || !*p->cfg_path || !p->weights_path || !*p->weights_path)
            why = "a darknet model needs cfg_path and weights_path";
    } else if (p->model_type == INFER_MODEL_ONNX || p->model_type == INFER_MODEL_ONNX_CROPS) {
        if (!p->onnx_path || !*p->onnx_path)
            why = "an onnx model needs onnx_path";
        else if (p->model_type == INFER_MODEL_ONNX_CROPS &&
                 (p->crop_grid < 1 || p->crop_grid > INFER_MAX_CROP_GRID))
            why = "crop_grid out of range";
        else if (p->model_type == INFER_MODEL_ONNX_CROPS && p->num_classes != 1)
            why = "a crop classifier has one class";
    } else {
        why = "unknown model type";
    }
    if (!why && (p->input_width < 1 || p->input_width > INFER_MAX_INPUT_SIDE ||
                 p->input_height < 1 || p->input_height > INFER_MAX_INPUT_SIDE))
        why = "input size out of range";
    else if (!why && (p->num_classes < 1 || p->num_classes > INFER_MAX_CLASSES))
        why = "num_classes out of range";
    else if (!why && (!std::isfinite(p->mean[0]) || !std::isfinite(p->mean[1]) ||
                      !std::isfinite(p->mean[2]) || !std::isfinite(p->scale) ||
                      p->scale == 0.0f))
        why = "mean and scale must be finite and scale nonzero";
    else if (!why && (!valid_unit(p->box_threshold) || !valid_unit(p->nms_threshold)))
        why = "thresholds must be in [0, 1]";
    else if (!why && (p->max_detections < 1 || p->max_detections > INFER_MAX_DETECTIONS))
        why = "max_detections out of range";
    else if (!why && (p->threads < 1 || p->threads > INFER_MAX_THREADS))
        why = "threads out of range";
    else if (!why && (p->score < 0 || p->score >= INFER_SCORE_MAX))
        why = "unknown score mode";
    else if (!why && (p->box_units < 0 || p->box_units >= INFER_BOX_UNITS_MAX))
        why = "unknown box units";
    if (why)
        set_error(reterr, reterr_len, "detector", why);
    return why == nullptr;
}

float clip_unit(float value)
{
    return value < 0.0f ? 0.0f : (value > 1.0f ? 1.0f : value);
}

// Reads one output blob as rows of 5 + num_classes floats and appends the
// rows above the threshold to det->candidates. Throws on a shape it cannot
// read (caught by the extern "C" caller).
void collect_rows(infer_detector *det, const cv::Mat &blob, size_t output_number)
{
    const infer_detector_params &p = det->params;
    const int want_cols = 5 + p.num_classes;
    int rows = 0;
    int cols = 0;

    if (blob.type() != CV_32F)
        throw std::runtime_error("model output " + std::to_string(output_number) +
                                           " is not float32");
    if (blob.dims == 2) {
        rows = blob.size[0];
        cols = blob.size[1];
    } else if (blob.dims == 3 && blob.size[0] == 1) {
        rows = blob.size[1];
        cols = blob.size[2];
    } else {
        throw std::runtime_error(
                 "model output " + std::to_string(output_number) + " has " +
                     std::to_string(blob.dims) + " dimensions; expected rows x (5 + classes)");
    }
    if (cols != want_cols)
        throw std::runtime_error(
                 "model output " + std::to_string(output_number) + " has " +
                     std::to_string(cols) + " columns; expected 5 + " +
                     std::to_string(p.num_classes) + " classes = " + std::to_string(want_cols));
    const cv::Mat flat = blob.isContinuous() ? blob : blob.clone();
    const float *data = flat.ptr<float>();
    const float unit_x = p.box_units == INFER_BOXES_INPUT_PIXELS ? 1.0f / p.input_width : 1.0f;
    const float unit_y = p.box_units == INFER_BOXES_INPUT_PIXELS ? 1.0f / p.input_height : 1.0f;

    for (int r = 0; r < rows; r++) {
        const float *row = data + static_cast<size_t>(r) * static_cast<size_t>(cols);
        int best = 0;
        for (int c = 1; c < p.num_classes; c++)
            if (row[5 + c] > row[5 + best])
                best = c;
        float confidence = row[5 + best];
        if (p.score == INFER_SCORE_OBJECTNESS_X_CLASS)
            confidence *= row[4];
        note_score(det, confidence);
        // Also drops NaN, which compares false.
        if (!(confidence > p.box_threshold))
            continue;
        const float cx = row[0] * unit_x;
        const float cy = row[1] * unit_y;
        const float w = row[2] * unit_x;
        const float h = row[3] * unit_y;
        if (!std::isfinite(cx) || !std::isfinite(cy) || !std::isfinite(w) || !std::isfinite(h))
            continue;
        const float x0 = clip_unit(cx - w / 2.0f);
        const float y0 = clip_unit(cy - h / 2.0f);
        const float x1 = clip_unit(cx + w / 2.0f);
        const float y1 = clip_unit(cy + h / 2.0f);
        if (!(x1 > x0) || !(y1 > y0))
            continue;
        infer_detection d{};
        d.class_id = best;
        d.confidence = confidence > 1.0f ? 1.0f : confidence;
        d.x = x0;
        d.y = y0;
        d.w = x1 - x0;
        d.h = y1 - y0;
        det->candidates.push_back(d);
    }
}

// A crop's pixel bound: floor(fraction * size + 0.5), as infer.h says.
int crop_bound(int numerator, int denominator, int size)
{
    return static_cast<int>(std::floor(static_cast<double>(numerator) * size / denominator + 0.5));
}

// The crops of infer.h for an image of this size: det->crops (views into
// image) and det->crop_boxes (their normalized boxes), the whole image first.
void cut_crops(infer_detector *det, const cv::Mat &image)
{
    const int n = det->params.crop_grid;
    const int w = image.cols;
    const int h = image.rows;

    det->crops.clear();
    det->crop_boxes.clear();
    det->crops.push_back(image);
    det->crop_boxes.push_back(infer_detection{0, 0.0f, 0.0f, 0.0f, 1.0f, 1.0f, 0, {}});
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < n; i++) {
            const int x0 = crop_bound(i, n + 1, w);
            const int y0 = crop_bound(j, n + 1, h);
            const int x1 = std::max(crop_bound(i + 2, n + 1, w), x0 + 1);
            const int y1 = std::max(crop_bound(j + 2, n + 1, h), y0 + 1);
            det->crops.push_back(image(cv::Rect(x0, y0, std::min(x1, w) - x0, std::min(y1, h) - y0)));
            det->crop_boxes.push_back(infer_detection{
                0, 0.0f, static_cast<float>(x0) / w, static_cast<float>(y0) / h,
                static_cast<float>(x1 - x0) / w, static_cast<float>(y1 - y0) / h, 0, {}});
        }
    }
}

// onnx_crops: a crop above the threshold becomes a candidate, with its
// signature row when the model has one (bounded values keep the reply within
// REPLY_DETECTIONS_BYTES).
void add_crop_candidate(infer_detector *det, size_t index, float confidence, const float *signature)
{
    note_score(det, confidence);
    // Also drops NaN, which compares false.
    if (!(confidence > det->params.box_threshold))
        return;
    infer_detection d = det->crop_boxes[index];
    d.confidence = confidence > 1.0f ? 1.0f : confidence;
    if (signature) {
        bool usable = true;
        for (int k = 0; k < INFER_SIGNATURE_DIMS; k++)
            usable = usable && std::isfinite(signature[k]) && std::fabs(signature[k]) <= 1e6f;
        if (usable) {
            std::memcpy(d.signature, signature, sizeof(d.signature));
            d.signature_len = INFER_SIGNATURE_DIMS;
        }
    }
    det->candidates.push_back(d);
}

// onnx_crops: scores the crops, INFER_CROP_BATCH at a time (a whole grid in
// one batch needs several times the activation memory for a few percent of
// speed), and keeps the ones above the threshold. Throws on an output of
// the wrong shape.
void collect_crops(infer_detector *det, const cv::Mat &image)
{
    const infer_detector_params &p = det->params;

    cut_crops(det, image);
    for (size_t start = 0; start < det->crops.size(); start += INFER_CROP_BATCH) {
        const size_t count = std::min<size_t>(INFER_CROP_BATCH, det->crops.size() - start);
        det->batch.assign(det->crops.begin() + static_cast<std::ptrdiff_t>(start),
                          det->crops.begin() + static_cast<std::ptrdiff_t>(start + count));
        cv::dnn::blobFromImages(det->batch, det->blob, p.scale, cv::Size(p.input_width, p.input_height),
                                cv::Scalar(p.mean[0], p.mean[1], p.mean[2]), p.swap_rb != 0, false,
                                CV_32F);
        det->net.setInput(det->blob);
        det->net.forward(det->outs, det->out_names);
        const cv::Mat &score = det->outs.at(0);
        if (score.type() != CV_32F || score.total() != count)
            throw std::runtime_error("model output \"score\" has " + std::to_string(score.total()) +
                                     " values for " + std::to_string(count) +
                                     " crops; expected one per crop");
        const cv::Mat scores = score.isContinuous() ? score : score.clone();
        cv::Mat signatures;
        if (det->has_signature) {
            const cv::Mat &sig = det->outs.at(1);
            if (sig.type() != CV_32F || sig.total() != count * INFER_SIGNATURE_DIMS)
                throw std::runtime_error("model output \"signature\" has " + std::to_string(sig.total()) +
                                         " values; expected " + std::to_string(INFER_SIGNATURE_DIMS) +
                                         " per crop");
            signatures = sig.isContinuous() ? sig : sig.clone();
        }
        for (size_t i = 0; i < count; i++)
            add_crop_candidate(det, start + i, scores.ptr<float>()[i],
                               det->has_signature ? signatures.ptr<float>() + i * INFER_SIGNATURE_DIMS
                                                  : nullptr);
    }
}

// One frame through the net and the post-processing; the result is in
// det->found, strongest first. Throws on any failure.
void detect(infer_detector *det, const cv::Mat &image)
{
    const infer_detector_params &p = det->params;

    det->candidates.clear();
    det->found.clear();
    det->top_score = 0.0f;
    if (p.model_type == INFER_MODEL_ONNX_CROPS) {
        collect_crops(det, image);
    } else {
        cv::dnn::blobFromImage(image, det->blob, p.scale, cv::Size(p.input_width, p.input_height),
                               cv::Scalar(p.mean[0], p.mean[1], p.mean[2]), p.swap_rb != 0,
                               false, CV_32F);
        det->net.setInput(det->blob);
        det->net.forward(det->outs, det->out_names);
        for (size_t i = 0; i < det->outs.size(); i++)
            collect_rows(det, det->outs[i], i);
    }

    // NMS one class at a time: sort the candidates by class, then run each
    // class's stretch through NMSBoxes.
    std::stable_sort(det->candidates.begin(), det->candidates.end(),
                     [](const infer_detection &a, const infer_detection &b) {
                         return a.class_id < b.class_id;
                     });
    size_t start = 0;
    while (start < det->candidates.size()) {
        size_t end = start;
        const int class_id = det->candidates[start].class_id;
        det->class_boxes.clear();
        det->class_scores.clear();
        det->class_index.clear();
        while (end < det->candidates.size() && det->candidates[end].class_id == class_id) {
            const infer_detection &d = det->candidates[end];
            det->class_boxes.emplace_back(d.x, d.y, d.w, d.h);
            det->class_scores.push_back(d.confidence);
            det->class_index.push_back(static_cast<int>(end));
            end++;
        }
        det->keep.clear();
        cv::dnn::NMSBoxes(det->class_boxes, det->class_scores, p.box_threshold,
                          p.nms_threshold, det->keep);
        for (int k : det->keep)
            det->found.push_back(det->candidates[static_cast<size_t>(det->class_index[k])]);
        start = end;
    }
    std::stable_sort(det->found.begin(), det->found.end(),
                     [](const infer_detection &a, const infer_detection &b) {
                         return a.confidence > b.confidence;
                     });
    if (det->found.size() > static_cast<size_t>(p.max_detections))
        det->found.resize(static_cast<size_t>(p.max_detections));
}

// OpenCV's Darknet importer reads the .weights file without checking that
// it holds enough data: a truncated file (an interrupted download) loads
// "successfully" with uninitialised weights. Count the floats the parsed
// net holds in its convolution and batch-norm layers (exactly what the
// importer reads: biases, [scales, means, variances,] weights) and compare
// with the file size. Throws with a clear message when the file is short.
void check_darknet_weights_size(const cv::dnn::Net &net, const char *weights_path)
{
    std::FILE *file = std::fopen(weights_path, "rb");
    if (!file)
        throw std::runtime_error(std::string("cannot open ") + weights_path);
    unsigned char head[12] = {0};
    const size_t got = std::fread(head, 1, sizeof(head), file);
    long size = -1;
    if (std::fseek(file, 0, SEEK_END) == 0)
        size = std::ftell(file);
    std::fclose(file);
    if (got != sizeof(head) || size < 0)
        throw std::runtime_error(std::string("cannot read ") + weights_path);
    int32_t major = 0;
    int32_t minor = 0;
    std::memcpy(&major, head, sizeof(major));
    std::memcpy(&minor, head + 4, sizeof(minor));
    // major, minor, revision, then a 64-bit "seen" (32-bit before 0.2).
    const unsigned long long header = (major * 10 + minor) >= 2 ? 20u : 16u;

    unsigned long long floats = 0;
    for (const cv::String &name : net.getLayerNames()) {
        const cv::Ptr<cv::dnn::Layer> layer = net.getLayer(net.getLayerId(name));
        if (!layer || (layer->type != "Convolution" && layer->type != "BatchNorm"))
            continue;
        for (const cv::Mat &blob : layer->blobs)
            floats += blob.total();
    }
    const unsigned long long need = header + floats * sizeof(float);
    if (static_cast<unsigned long long>(size) < need)
        throw std::runtime_error(
                 std::string("weights file ") + weights_path + " is truncated: " +
                     std::to_string(size) + " bytes, the cfg needs " + std::to_string(need));
}

// OpenCV's own errors: the description and the function, without the
// build paths and line numbers of what() ("OpenCV(4.6.0) /build/...").
void set_cv_error(char *reterr, size_t reterr_len, const char *what, const cv::Exception &e)
{
    if (!reterr || reterr_len == 0)
        return;
    std::snprintf(reterr, reterr_len, "%s: %s%s%s%s", what,
                  e.err.empty() ? "OpenCV error" : e.err.c_str(),
                  e.func.empty() ? "" : " (in ", e.func.c_str(), e.func.empty() ? "" : ")");
}

// Only inside a catch (...) block: classifies the exception in flight, writes
// its reason, and returns INFER_ERR_NOMEM for bad_alloc, else `otherwise`.
enum infer_result current_exception_result(char *reterr, size_t reterr_len, const char *what,
                                           enum infer_result otherwise)
{
    try {
        throw;
    } catch (const std::bad_alloc &) {
        set_error(reterr, reterr_len, what, "out of memory");
        return INFER_ERR_NOMEM;
    } catch (const cv::Exception &e) {
        set_cv_error(reterr, reterr_len, what, e);
    } catch (const std::exception &e) {
        set_error(reterr, reterr_len, what, e.what());
    } catch (...) {
        set_error(reterr, reterr_len, what, "unknown C++ exception");
    }
    return otherwise;
}

} // namespace

extern "C" const char *infer_result_str(enum infer_result result)
{
    switch (result) {
    case INFER_OK: return "ok";
    case INFER_ERR_INVALID: return "invalid argument";
    case INFER_ERR_MODEL: return "model could not be loaded";
    case INFER_ERR_RUNTIME: return "inference failed";
    case INFER_ERR_NOSPACE: return "output buffer too small";
    case INFER_ERR_NOMEM: return "out of memory";
    case INFER_RESULT_MAX: break;
    }
    return "unknown result";
}

extern "C" const char *infer_model_type_str(enum infer_model_type type)
{
    switch (type) {
    case INFER_MODEL_DARKNET: return "darknet";
    case INFER_MODEL_ONNX: return "onnx";
    case INFER_MODEL_ONNX_CROPS: return "onnx_crops";
    case INFER_MODEL_TYPE_MAX: break;
    }
    return "unknown";
}

extern "C" const char *infer_opencv_version(void)
{
    return CV_VERSION;
}

extern "C" enum infer_result infer_net_load_darknet(const char *cfg, size_t cfg_len,
                                                    const unsigned char *weights,
                                                    size_t weights_len,
                                                    struct infer_net **ret_net,
                                                    char *reterr, size_t reterr_len)
{
    enum infer_result result = INFER_OK;
    struct infer_net *net = nullptr;

    if (!cfg || cfg_len == 0 || !weights || weights_len == 0 || !ret_net) {
        set_error(reterr, reterr_len, "load", "model buffers must not be empty");
        result = INFER_ERR_INVALID;
        goto out;
    }
    try {
        net = new infer_net;
        net->net = cv::dnn::readNetFromDarknet(cfg, cfg_len,
                                               reinterpret_cast<const char *>(weights),
                                               weights_len);
        if (net->net.empty()) {
            set_error(reterr, reterr_len, "load", "OpenCV returned an empty network");
            result = INFER_ERR_MODEL;
            goto out;
        }
        net->net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
        net->net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    } catch (...) {
        result = current_exception_result(reterr, reterr_len, "load", INFER_ERR_MODEL);
        goto out;
    }
    *ret_net = net;
    net = nullptr;

out:
    delete net;
    return result;
}

extern "C" enum infer_result infer_net_forward(struct infer_net *net, const float *input,
                                               int channels, int height, int width,
                                               float *out, size_t out_cap,
                                               size_t *ret_out_len,
                                               char *reterr, size_t reterr_len)
{
    if (!net || !input || !out || !ret_out_len || channels <= 0 || height <= 0 ||
        width <= 0) {
        set_error(reterr, reterr_len, "forward", "bad arguments");
        return INFER_ERR_INVALID;
    }
    try {
        const int shape[4] = {1, channels, height, width};
        // The Mat borrows the caller's memory; setInput copies it.
        cv::Mat blob(4, shape, CV_32F, const_cast<float *>(input));
        net->net.setInput(blob);
        cv::Mat output = net->net.forward();
        const size_t total = output.total();
        if (total > out_cap) {
            set_error(reterr, reterr_len, "forward", "output larger than the buffer");
            return INFER_ERR_NOSPACE;
        }
        cv::Mat flat = output.isContinuous() ? output : output.clone();
        std::memcpy(out, flat.ptr<float>(), total * sizeof(float));
        *ret_out_len = total;
    } catch (...) {
        return current_exception_result(reterr, reterr_len, "forward", INFER_ERR_RUNTIME);
    }
    return INFER_OK;
}

extern "C" struct infer_net *infer_net_free(struct infer_net *net)
{
    delete net;
    return nullptr;
}

extern "C" enum infer_result infer_detector_new(const struct infer_detector_params *params,
                                                struct infer_detector **ret_detector,
                                                char *reterr, size_t reterr_len)
{
    enum infer_result result = INFER_OK;
    struct infer_detector *det = nullptr;

    if (!params || !ret_detector) {
        set_error(reterr, reterr_len, "detector", "bad arguments");
        result = INFER_ERR_INVALID;
        goto out;
    }
    if (!check_params(params, reterr, reterr_len)) {
        result = INFER_ERR_INVALID;
        goto out;
    }
    try {
        // OpenCV writes its INFO messages to stdout, which carries the
        // protocol: keep it to warnings and errors (they go to stderr).
        cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_WARNING);
        cv::setNumThreads(params->threads);

        det = new infer_detector;
        det->params = *params;
        det->params.cfg_path = nullptr;
        det->params.weights_path = nullptr;
        det->params.onnx_path = nullptr;
        if (params->model_type == INFER_MODEL_DARKNET) {
            det->net = cv::dnn::readNetFromDarknet(params->cfg_path, params->weights_path);
            check_darknet_weights_size(det->net, params->weights_path);
        } else {
            det->net = cv::dnn::readNetFromONNX(params->onnx_path);
        }
        if (det->net.empty()) {
            set_error(reterr, reterr_len, "load", "OpenCV returned an empty network");
            result = INFER_ERR_MODEL;
            goto out;
        }
        det->net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
        det->net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
        if (params->model_type == INFER_MODEL_ONNX_CROPS) {
            det->has_signature = det->net.getLayerId("signature") >= 0;
            det->out_names = {"score"};
            if (det->has_signature)
                det->out_names.push_back("signature");
        }
        else
            det->out_names = det->net.getUnconnectedOutLayersNames();
        if (det->out_names.empty()) {
            set_error(reterr, reterr_len, "load", "the network has no output layer");
            result = INFER_ERR_MODEL;
            goto out;
        }
    } catch (...) {
        result = current_exception_result(reterr, reterr_len, "load", INFER_ERR_MODEL);
        goto out;
    }
    // One pass over a blank image: checks that the net runs at this input
    // size and that its outputs have the expected columns.
    try {
        const cv::Mat blank(params->input_height, params->input_width, CV_8UC3,
                            cv::Scalar::all(0));
        detect(det, blank);
    } catch (...) {
        result = current_exception_result(reterr, reterr_len, "model check", INFER_ERR_MODEL);
        goto out;
    }
    *ret_detector = det;
    det = nullptr;

out:
    delete det;
    return result;
}

extern "C" enum infer_result infer_detector_run(struct infer_detector *detector,
                                                const unsigned char *bgr, int width,
                                                int height, size_t stride,
                                                struct infer_detection *out, size_t out_cap,
                                                size_t *ret_count,
                                                char *reterr, size_t reterr_len)
{
    if (!detector || !bgr || !ret_count || (!out && out_cap > 0) || width < 1 ||
        height < 1 || width > INFER_MAX_IMAGE_SIDE || height > INFER_MAX_IMAGE_SIDE ||
        stride < static_cast<size_t>(width) * 3u) {
        set_error(reterr, reterr_len, "detect", "bad arguments");
        return INFER_ERR_INVALID;
    }
    try {
        // Borrows the caller's pixels; blobFromImage copies them.
        const cv::Mat image(height, width, CV_8UC3, const_cast<unsigned char *>(bgr), stride);
        detect(detector, image);
        const size_t count = std::min(out_cap, detector->found.size());
        if (count > 0)
            std::memcpy(out, detector->found.data(), count * sizeof(*out));
        *ret_count = count;
    } catch (...) {
        return current_exception_result(reterr, reterr_len, "detect", INFER_ERR_RUNTIME);
    }
    return INFER_OK;
}

extern "C" float infer_detector_top_score(const struct infer_detector *detector)
{
    return detector ? detector->top_score : 0.0f;
}

extern "C" struct infer_detector *infer_detector_free(struct infer_detector *detector)
{
    try {
        delete detector;
    } catch (...) {
        // A destructor that throws would terminate anyway; nothing to report.
    }
    return nullptr;
}
