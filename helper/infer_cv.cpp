// SPDX-License-Identifier: AGPL-3.0-or-later
//
// The only C++ in the project: OpenCV DNN behind helper/infer.h.
// Every entry point catches every exception; nothing crosses into C.

#include "infer.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>

struct infer_net {
    cv::dnn::Net net;
};

namespace {

void set_error(char *reterr, size_t reterr_len, const char *what, const char *detail)
{
    if (!reterr || reterr_len == 0)
        return;
    std::snprintf(reterr, reterr_len, "%s: %s", what, detail ? detail : "unknown error");
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
    } catch (const std::bad_alloc &) {
        set_error(reterr, reterr_len, "load", "out of memory");
        result = INFER_ERR_NOMEM;
        goto out;
    } catch (const std::exception &e) {
        set_error(reterr, reterr_len, "load", e.what());
        result = INFER_ERR_MODEL;
        goto out;
    } catch (...) {
        set_error(reterr, reterr_len, "load", "unknown C++ exception");
        result = INFER_ERR_MODEL;
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
    } catch (const std::bad_alloc &) {
        set_error(reterr, reterr_len, "forward", "out of memory");
        return INFER_ERR_NOMEM;
    } catch (const std::exception &e) {
        set_error(reterr, reterr_len, "forward", e.what());
        return INFER_ERR_RUNTIME;
    } catch (...) {
        set_error(reterr, reterr_len, "forward", "unknown C++ exception");
        return INFER_ERR_RUNTIME;
    }
    return INFER_OK;
}

extern "C" struct infer_net *infer_net_free(struct infer_net *net)
{
    delete net;
    return nullptr;
}
