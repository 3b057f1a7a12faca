/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * tsd-helper: the inference process, kept apart from OctoPrint so that a
 * crash or an out-of-memory in OpenCV can never take OctoPrint down.
 *
 * Modes:
 *   tsd-helper --version        print the helper and OpenCV versions
 *   tsd-helper --self-check     build a tiny network in memory, run it once and
 *                               compare the output with values computed by hand
 *   tsd-helper --config FILE    load the model FILE describes (config.h) and
 *                               serve detection requests on stdin/stdout
 *   tsd-helper --bench FILE JPEG [--repeat N]
 *                               load the same model, score the local file JPEG
 *                               N times (default 5) and print the detections
 *                               and the per-frame times (below)
 *
 * Serving: requests and responses are the frames of frame.h, with the JSON
 * payloads of reply.h. One response per request, in order:
 *   JPEG frame (type 1) -> detections (type 1), or error (type 3) when the
 *                          JPEG cannot be decoded or the model fails;
 *   ping (type 2)       -> pong (type 2), same id, empty payload;
 *   unknown type        -> error, same id;
 *   payload larger than max_frame_bytes -> error, same id; the payload is
 *                          read and discarded, the stream stays usable.
 * Framing that cannot be trusted (bad magic, version or reserved field, or
 * EOF in the middle of a frame) gets an error with id 0 and exit status 3.
 * EOF between frames: exit status 0.
 *
 * stdout carries nothing but frames: the helper moves its protocol output to
 * a private descriptor and points descriptor 1 at stderr, so that anything a
 * library prints lands in the log instead of corrupting the stream.
 *
 * Benchmark (--bench): what one frame costs on this machine, with the
 * shipped helper and model, where serving cannot run (qemu-user has no
 * seccomp, and serving refuses without its sandbox). It reads one JPEG from
 * a file named on the command line, whole and before the sandbox, never
 * anything from stdin, then takes the same steps as serving: warm-up, only
 * its descriptors kept, the seccomp filter. Where the filter cannot be
 * installed it says so on stderr and goes on unsandboxed: its only input is
 * a file the operator chose (docs/security.md). stdout: the detections of the
 * last run as serving sends them (id 0), then
 *   {"frames":N,"start_ms":L,"median_ms":M,"max_ms":X,"top_score":S,"detections":D,
 *    "sandbox":"..."}
 * start_ms is configuration, model, warm-up frame and sandbox (what serving
 * does before its ready line, without loading the program); top_score is the model's best score for the frame, threshold or not
 * (infer_detector_top_score()). A file that is missing, empty, not a regular
 * file, larger than max_frame_bytes or not a decodable JPEG: exit status 2.
 *
 * Exit status: 0 clean EOF (and --version, --self-check, --bench success); 1
 * I/O error on the pipes, out of memory, or a failed self-check; 2 usage,
 * configuration, model or benchmark input error (the reason on stderr); 3 bad
 * framing.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <turbojpeg.h>

#include "config.h"
#include "errtext.h"
#include "fdio.h"
#include "frame.h"
#include "infer.h"
#include "jpeg.h"
#include "monotime.h"
#include "reply.h"
#include "sandbox.h"
#ifdef TSD_HELPER_TEST_HOOKS
#include "test_probe.h"
#endif

#ifndef TSD_VERSION
#error "meson passes TSD_VERSION"
#endif

enum helper_result {
    HELPER_OK = 0,
    HELPER_ERR_FAILED = 1,   /* I/O on the pipes, out of memory, failed self-check */
    HELPER_ERR_USAGE = 2,    /* usage, configuration or model */
    HELPER_ERR_PROTOCOL = 3, /* bad framing on stdin */
    HELPER_RESULT_MAX
};

/* stdin is read in chunks of this size. */
#define HELPER_READ_CHUNK (64u * 1024u)
/* The largest decoded (already DCT-scaled) image accepted, in bytes. */
#define HELPER_MAX_DECODED_BYTES (64u * 1024u * 1024u)
#define HELPER_MAX_MESSAGE 1024u
/* --bench: frames per run, default and most. */
#define HELPER_BENCH_REPEAT 5u
#define HELPER_BENCH_MAX_REPEAT 1000u

struct server {
    struct helper_config *cfg;
    struct infer_detector *detector;
    struct jpg_decoder *decoder;
    struct frame_parser *parser;
    const char *class_names[CONFIG_MAX_CLASSES];
    unsigned char *pixels; /* decoded frame, reused */
    size_t pixels_cap;
    struct infer_detection *detections; /* cfg->max_detections */
    unsigned char *reply;  /* FRAME_HEADER_LEN + reply_cap */
    size_t reply_cap;
    unsigned char *input;  /* HELPER_READ_CHUNK */
    int out_fd;            /* the protocol's stdout */
};

static const char *helper_result_str(enum helper_result result)
{
    switch (result) {
    case HELPER_OK: return "ok";
    case HELPER_ERR_FAILED: return "failed";
    case HELPER_ERR_USAGE: return "usage, configuration, model or input error";
    case HELPER_ERR_PROTOCOL: return "bad framing";
    case HELPER_RESULT_MAX: break;
    }
    return "unknown result";
}

/* One 1x1 convolution, 3 input channels -> 2 outputs, linear activation. */
static const char self_check_cfg[] =
    "[net]\nwidth=4\nheight=4\nchannels=3\n\n"
    "[convolutional]\nfilters=2\nsize=1\nstride=1\npad=0\nactivation=linear\n";

#define SELF_CHECK_FILTERS 2
#define SELF_CHECK_CHANNELS 3
#define SELF_CHECK_SIDE 4

static size_t put_u32(unsigned char *buf, uint32_t value)
{
    memcpy(buf, &value, sizeof(value)); /* Darknet files are little-endian */
    return sizeof(value);
}

static size_t put_f32(unsigned char *buf, float value)
{
    memcpy(buf, &value, sizeof(value));
    return sizeof(value);
}

static enum helper_result self_check(void)
{
    enum helper_result result = HELPER_OK;
    unsigned char weights[64];
    const float biases[SELF_CHECK_FILTERS] = {0.5f, -1.0f};
    const float kernel[SELF_CHECK_FILTERS] = {0.25f, 2.0f};
    float input[SELF_CHECK_CHANNELS * SELF_CHECK_SIDE * SELF_CHECK_SIDE];
    float output[SELF_CHECK_FILTERS * SELF_CHECK_SIDE * SELF_CHECK_SIDE];
    size_t output_len = 0;
    struct infer_net *net = NULL;
    char err[512] = "";
    enum infer_result rc;
    size_t off = 0;
    uint64_t seen = 0;

    /* Header: major 0, minor 2, revision 0, then a 64-bit "seen" counter. */
    off += put_u32(weights + off, 0);
    off += put_u32(weights + off, 2);
    off += put_u32(weights + off, 0);
    memcpy(weights + off, &seen, sizeof(seen));
    off += sizeof(seen);
    for (int f = 0; f < SELF_CHECK_FILTERS; f++)
        off += put_f32(weights + off, biases[f]);
    for (int f = 0; f < SELF_CHECK_FILTERS; f++)
        for (int c = 0; c < SELF_CHECK_CHANNELS; c++)
            off += put_f32(weights + off, kernel[f]);

    for (size_t i = 0; i < sizeof(input) / sizeof(input[0]); i++)
        input[i] = 1.0f;

    rc = infer_net_load_darknet(self_check_cfg, sizeof(self_check_cfg) - 1, weights, off,
                                &net, err, sizeof(err));
    if (rc != INFER_OK) {
        fprintf(stderr, "tsd-helper: self-check: %s (%s)\n", infer_result_str(rc), err);
        result = HELPER_ERR_FAILED;
        goto out;
    }
    rc = infer_net_forward(net, input, SELF_CHECK_CHANNELS, SELF_CHECK_SIDE, SELF_CHECK_SIDE,
                           output, sizeof(output) / sizeof(output[0]), &output_len,
                           err, sizeof(err));
    if (rc != INFER_OK) {
        fprintf(stderr, "tsd-helper: self-check: %s (%s)\n", infer_result_str(rc), err);
        result = HELPER_ERR_FAILED;
        goto out;
    }
    if (output_len != sizeof(output) / sizeof(output[0])) {
        fprintf(stderr, "tsd-helper: self-check: %zu outputs, expected %zu\n", output_len,
                sizeof(output) / sizeof(output[0]));
        result = HELPER_ERR_FAILED;
        goto out;
    }
    for (int f = 0; f < SELF_CHECK_FILTERS; f++) {
        /* Each output pixel = bias + kernel * (sum over 3 channels of 1.0). */
        float expected = biases[f] + kernel[f] * SELF_CHECK_CHANNELS;
        for (int i = 0; i < SELF_CHECK_SIDE * SELF_CHECK_SIDE; i++) {
            float got = output[f * SELF_CHECK_SIDE * SELF_CHECK_SIDE + i];
            if (got < expected - 1e-5f || got > expected + 1e-5f) {
                fprintf(stderr, "tsd-helper: self-check: output %d/%d is %g, expected %g\n",
                        f, i, (double)got, (double)expected);
                result = HELPER_ERR_FAILED;
                goto out;
            }
        }
    }
    printf("self-check ok: opencv %s, %zu outputs\n", infer_opencv_version(), output_len);

out:
    net = infer_net_free(net);
    return result;
}

/* Sends the response whose payload (len bytes) is already in place after
 * the header room of srv->reply. */
static enum helper_result send_reply(struct server *srv, uint8_t type, uint32_t id, size_t len)
{
    char errbuf[128];

    frame_header_encode(srv->reply, FRAME_RESPONSE_MAGIC, type, id, (uint32_t)len);
    if (!write_all(srv->out_fd, srv->reply, FRAME_HEADER_LEN + len)) {
        fprintf(stderr, "tsd-helper: cannot write a response: %s\n",
                errno_text(errno, errbuf, sizeof(errbuf)));
        return HELPER_ERR_FAILED;
    }
    return HELPER_OK;
}

__attribute__((format(printf, 3, 4)))
static enum helper_result send_error(struct server *srv, uint32_t id, const char *fmt, ...)
{
    char message[HELPER_MAX_MESSAGE];
    size_t len = 0;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    if (reply_error((char *)srv->reply + FRAME_HEADER_LEN, srv->reply_cap, id, message, &len) !=
        REPLY_OK) {
        /* Cannot happen: reply_cap >= REPLY_ERROR_BYTES. */
        fprintf(stderr, "tsd-helper: error reply does not fit: %s\n", message);
        return HELPER_ERR_FAILED;
    }
    return send_reply(srv, FRAME_RESPONSE_ERROR, id, len);
}

/* Decodes one JPEG and runs the model on it: srv->detections holds *ret_count
 * detections. False, with the reason for the requester in why, when it
 * cannot. */
static bool detect_jpeg(struct server *srv, const unsigned char *payload, size_t len,
                        struct jpg_output *ret_decoded, size_t *ret_count, char *why,
                        size_t why_len)
{
    const struct helper_config *cfg = srv->cfg;
    struct jpg_output plan;
    enum jpg_result jr;
    enum infer_result ir;
    char err[HELPER_MAX_MESSAGE / 2] = "";
    int target_width = 0;
    int target_height = 0;

    config_decode_target(cfg, &target_width, &target_height);
    jr = jpg_plan(srv->decoder, payload, len, target_width, target_height, &plan);
    if (jr != JPG_OK) {
        snprintf(why, why_len, "%s", jpg_result_str(jr));
        return false;
    }
    if (plan.bytes > HELPER_MAX_DECODED_BYTES) {
        snprintf(why, why_len, "decoded image of %dx%d is too large", plan.width, plan.height);
        return false;
    }
    if (plan.bytes > srv->pixels_cap) {
        /* Grows to the largest frame seen and stays there: a steady stream
         * of frames allocates nothing. */
        unsigned char *grown = realloc(srv->pixels, plan.bytes);
        if (!grown) {
            snprintf(why, why_len, "out of memory for a %dx%d image", plan.width, plan.height);
            return false;
        }
        srv->pixels = grown;
        srv->pixels_cap = plan.bytes;
    }
    jr = jpg_decode_into(srv->decoder, payload, len, target_width, target_height,
                         JPG_FORMAT_BGR, srv->pixels, srv->pixels_cap, ret_decoded);
    if (jr != JPG_OK) {
        snprintf(why, why_len, "%s", jpg_result_str(jr));
        return false;
    }
    ir = infer_detector_run(srv->detector, srv->pixels, ret_decoded->width,
                            ret_decoded->height, ret_decoded->stride, srv->detections,
                            cfg->max_detections, ret_count, err, sizeof(err));
    if (ir != INFER_OK) {
        snprintf(why, why_len, "%s: %s", infer_result_str(ir), err);
        return false;
    }
    return true;
}

static enum helper_result handle_jpeg(struct server *srv, uint32_t id,
                                      const unsigned char *payload, size_t len)
{
    const struct helper_config *cfg = srv->cfg;
    struct jpg_output decoded;
    char why[HELPER_MAX_MESSAGE] = "";
    size_t count = 0;
    size_t reply_len = 0;
    double started = now_ms_precise();

    if (!detect_jpeg(srv, payload, len, &decoded, &count, why, sizeof(why)))
        return send_error(srv, id, "%s", why);
    if (reply_detections((char *)srv->reply + FRAME_HEADER_LEN, srv->reply_cap, id,
                         now_ms_precise() - started, decoded.info.width, decoded.info.height,
                         srv->detections, count, srv->class_names, cfg->num_classes,
                         &reply_len) != REPLY_OK)
        return send_error(srv, id, "detections do not fit in the reply");
    return send_reply(srv, FRAME_RESPONSE_DETECTIONS, id, reply_len);
}

static enum helper_result handle_event(struct server *srv, const struct frame_event *event)
{
    const struct frame_header *h = &event->header;

    if (event->kind == FRAME_EVENT_OVERSIZED)
        return send_error(srv, h->id, "frame of %lu bytes is larger than max_frame_bytes (%zu)",
                          (unsigned long)h->length, srv->cfg->max_frame_bytes);
    if (event->kind != FRAME_EVENT_FRAME)
        return HELPER_OK;
    switch (h->type) {
    case FRAME_REQUEST_JPEG:
        return handle_jpeg(srv, h->id, event->payload, h->length);
    case FRAME_REQUEST_PING:
        return send_reply(srv, FRAME_RESPONSE_PONG, h->id, 0);
    default:
        return send_error(srv, h->id, "unknown request type %u", (unsigned)h->type);
    }
}

/* Reads stdin until EOF or a framing error. */
static enum helper_result serve_loop(struct server *srv)
{
    enum helper_result result = HELPER_OK;
    char errbuf[128];

    for (;;) {
        ssize_t n = read(STDIN_FILENO, srv->input, HELPER_READ_CHUNK);
        size_t off = 0;

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "tsd-helper: cannot read stdin: %s\n",
                    errno_text(errno, errbuf, sizeof(errbuf)));
            result = HELPER_ERR_FAILED;
            goto out;
        }
        if (n == 0) {
            if (frame_parser_idle(srv->parser))
                goto out;
            fprintf(stderr, "tsd-helper: stdin ended in the middle of a frame\n");
            send_error(srv, 0, "truncated frame at end of input");
            result = HELPER_ERR_PROTOCOL;
            goto out;
        }
        while (off < (size_t)n) {
            struct frame_event event;
            size_t used = 0;
            enum frame_result fr = frame_parser_feed(srv->parser, srv->input + off,
                                                     (size_t)n - off, &used, &event);
            if (fr == FRAME_ERR_NOMEM) {
                fprintf(stderr, "tsd-helper: out of memory for a frame\n");
                send_error(srv, 0, "out of memory for a frame");
                result = HELPER_ERR_FAILED;
                goto out;
            }
            if (fr != FRAME_OK) {
                fprintf(stderr, "tsd-helper: bad framing on stdin: %s\n", frame_result_str(fr));
                send_error(srv, 0, "bad framing: %s", frame_result_str(fr));
                result = HELPER_ERR_PROTOCOL;
                goto out;
            }
            off += used;
            result = handle_event(srv, &event);
            if (result != HELPER_OK)
                goto out;
        }
    }

out:
    return result;
}

/* Opens path, which must be a non-empty regular file, for reading: *ret_fd
 * and its size, or false with the reason in why. */
static bool open_regular_file(const char *path, int *ret_fd, size_t *ret_size, char *why,
                              size_t why_len)
{
    bool ok = false;
    char errbuf[128];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        snprintf(why, why_len, "cannot open %s: %s", path,
                 errno_text(errno, errbuf, sizeof(errbuf)));
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) {
        snprintf(why, why_len, "%s is not a non-empty regular file", path);
        goto out;
    }
    *ret_fd = fd;
    *ret_size = (uint64_t)st.st_size > SIZE_MAX ? SIZE_MAX : (size_t)st.st_size;
    fd = -1;
    ok = true;

out:
    if (fd >= 0)
        close(fd);
    return ok;
}

/* A model file must exist and be a readable regular file; OpenCV's own
 * messages for a missing file are less clear. */
static bool check_model_file(const char *field, const char *path)
{
    char why[HELPER_MAX_MESSAGE];
    size_t size = 0;
    int fd = -1;

    if (!open_regular_file(path, &fd, &size, why, sizeof(why))) {
        fprintf(stderr, "tsd-helper: %s: %s\n", field, why);
        return false;
    }
    close(fd);
    return true;
}

/* Keeps the protocol's stdout for frames and points descriptor 1 at stderr. */
static bool take_stdout(int *ret_fd)
{
    char errbuf[128];
    int fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);

    if (fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
        fprintf(stderr, "tsd-helper: cannot set up stdout: %s\n",
                errno_text(errno, errbuf, sizeof(errbuf)));
        if (fd >= 0)
            close(fd);
        return false;
    }
    *ret_fd = fd;
    return true;
}

/* A made-up frame (a colour gradient, the model's input size, 4:2:0 like a
 * webcam's) through decode and model once, before the sandbox is locked:
 * OpenCV starts its worker threads and libjpeg-turbo probes the CPU on first
 * use, and both may read files then (see sandbox.h). */
static enum helper_result warm_up(struct server *srv)
{
    enum helper_result result = HELPER_ERR_FAILED;
    int width = srv->cfg->input_width;
    int height = srv->cfg->input_height;
    size_t bytes = (size_t)width * (size_t)height * 3u;
    unsigned char *picture = malloc(bytes);
    unsigned char *jpeg = NULL;
    unsigned long jpeg_len = 0;
    struct jpg_output decoded;
    char why[HELPER_MAX_MESSAGE] = "";
    size_t count = 0;
    tjhandle encoder = tjInitCompress();

    if (!picture || !encoder) {
        fprintf(stderr, "tsd-helper: out of memory for the warm-up frame\n");
        goto out;
    }
    for (size_t i = 0; i < bytes; i++)
        picture[i] = (unsigned char)(i % 251u);
    if (tjCompress2(encoder, picture, width, 0, height, TJPF_BGR, &jpeg, &jpeg_len, TJSAMP_420,
                    90, 0) != 0) {
        fprintf(stderr, "tsd-helper: cannot encode the warm-up frame: %s\n",
                tjGetErrorStr2(encoder));
        goto out;
    }
    if (!detect_jpeg(srv, jpeg, jpeg_len, &decoded, &count, why, sizeof(why))) {
        fprintf(stderr, "tsd-helper: model: the warm-up frame failed: %s\n", why);
        result = HELPER_ERR_USAGE;
        goto out;
    }
    result = HELPER_OK;

out:
    tjFree(jpeg);
    if (encoder)
        tjDestroy(encoder);
    free(picture);
    return result;
}

/* Warms up, then keeps only the pipes and locks the sandbox (sandbox.h).
 * *ret_filter says whether the filter is on; SANDBOX_FILTER_FAILED (the
 * reason in why) is left to the caller: serving refuses, --bench goes on. */
static enum helper_result enter_sandbox(struct server *srv, enum sandbox_filter *ret_filter,
                                        char *why, size_t why_len)
{
    enum helper_result result = warm_up(srv);

    if (result != HELPER_OK)
        return result;
    if (!sandbox_close_other_fds(srv->out_fd, why, why_len)) {
        fprintf(stderr, "tsd-helper: sandbox: %s\n", why);
        return HELPER_ERR_FAILED;
    }
    *ret_filter = sandbox_lock(why, why_len);
    return HELPER_OK;
}

/* Everything serving and --bench share before the sandbox: no core dumps
 * and no new privileges, SIGPIPE ignored, the protocol's stdout kept apart,
 * the configuration and the model loaded and the buffers allocated. The
 * caller calls server_close() whatever the result. */
static enum helper_result server_open(struct server *srv, const char *config_path)
{
    enum helper_result result = HELPER_OK;
    struct helper_config *cfg = NULL;
    struct infer_detector_params params;
    struct sigaction ignore;
    char err[HELPER_MAX_MESSAGE] = "";
    enum config_result cr;
    enum infer_result ir;

    if (!sandbox_restrict_process(err, sizeof(err))) {
        fprintf(stderr, "tsd-helper: sandbox: %s\n", err);
        result = HELPER_ERR_USAGE;
        goto out;
    }
    /* A write to a closed pipe must fail with EPIPE, not kill the helper. */
    memset(&ignore, 0, sizeof(ignore));
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    if (sigaction(SIGPIPE, &ignore, NULL) != 0 || !take_stdout(&srv->out_fd)) {
        result = HELPER_ERR_FAILED;
        goto out;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    cfg = malloc(sizeof(*cfg));
    if (!cfg) {
        fprintf(stderr, "tsd-helper: out of memory\n");
        result = HELPER_ERR_FAILED;
        goto out;
    }
    srv->cfg = cfg;
    cr = config_load(config_path, cfg, err, sizeof(err));
    if (cr != CONFIG_OK) {
        fprintf(stderr, "tsd-helper: configuration %s: %s\n", config_path, err);
        result = cr == CONFIG_ERR_NOMEM ? HELPER_ERR_FAILED : HELPER_ERR_USAGE;
        goto out;
    }
    for (size_t i = 0; i < cfg->num_classes; i++)
        srv->class_names[i] = cfg->classes[i];

    if (cfg->model_type == INFER_MODEL_DARKNET
            ? !check_model_file("model_cfg", cfg->model_cfg) ||
                  !check_model_file("model_weights", cfg->model_weights)
            : !check_model_file("model_onnx", cfg->model_onnx)) {
        result = HELPER_ERR_USAGE;
        goto out;
    }
    memset(&params, 0, sizeof(params));
    params.model_type = cfg->model_type;
    params.cfg_path = cfg->model_cfg;
    params.weights_path = cfg->model_weights;
    params.onnx_path = cfg->model_onnx;
    params.crop_grid = cfg->crop_grid;
    params.input_width = cfg->input_width;
    params.input_height = cfg->input_height;
    params.num_classes = (int)cfg->num_classes;
    memcpy(params.mean, cfg->mean, sizeof(params.mean));
    params.scale = cfg->scale;
    params.swap_rb = cfg->swap_rb;
    params.box_threshold = cfg->box_threshold;
    params.nms_threshold = cfg->nms_threshold;
    params.max_detections = (int)cfg->max_detections;
    params.threads = cfg->threads;
    params.score = cfg->score;
    params.box_units = cfg->box_units;
    ir = infer_detector_new(&params, &srv->detector, err, sizeof(err));
    if (ir != INFER_OK) {
        fprintf(stderr, "tsd-helper: model: %s: %s\n", infer_result_str(ir), err);
        result = ir == INFER_ERR_NOMEM ? HELPER_ERR_FAILED : HELPER_ERR_USAGE;
        goto out;
    }

    srv->reply_cap = REPLY_DETECTIONS_BYTES(cfg->max_detections);
    if (srv->reply_cap < REPLY_ERROR_BYTES)
        srv->reply_cap = REPLY_ERROR_BYTES;
    srv->reply = malloc(FRAME_HEADER_LEN + srv->reply_cap);
    srv->detections = calloc(cfg->max_detections, sizeof(*srv->detections));
    srv->input = malloc(HELPER_READ_CHUNK);
    if (!srv->reply || !srv->detections || !srv->input ||
        jpg_decoder_new(&srv->decoder) != JPG_OK ||
        frame_parser_new(cfg->max_frame_bytes, &srv->parser) != FRAME_OK) {
        fprintf(stderr, "tsd-helper: out of memory\n");
        result = HELPER_ERR_FAILED;
        goto out;
    }

out:
    /* What is allocated so far is the caller's, for server_close(). */
    return result;
}

static void server_close(struct server *srv)
{
    srv->parser = frame_parser_free(srv->parser);
    srv->decoder = jpg_decoder_free(srv->decoder);
    srv->detector = infer_detector_free(srv->detector);
    free(srv->pixels);
    free(srv->detections);
    free(srv->reply);
    free(srv->input);
    if (srv->out_fd >= 0)
        close(srv->out_fd);
    free(srv->cfg);
    memset(srv, 0, sizeof(*srv));
    srv->out_fd = -1;
}

static enum helper_result serve(const char *config_path)
{
    struct server srv = {.out_fd = -1};
    char err[HELPER_MAX_MESSAGE] = "";
    enum sandbox_filter filter = SANDBOX_FILTER_FAILED;
    enum helper_result result = server_open(&srv, config_path);

    if (result != HELPER_OK)
        goto out;
    result = enter_sandbox(&srv, &filter, err, sizeof(err));
    if (result != HELPER_OK)
        goto out;
    if (filter == SANDBOX_FILTER_FAILED) {
        /* Frames from the camera are never decoded unsandboxed. Exit status
         * 2: the supervisor waits its longest backoff, instead of restarting
         * a helper that cannot be sandboxed again and again. */
        fprintf(stderr, "tsd-helper: cannot lock the sandbox: %s\n", err);
        result = HELPER_ERR_USAGE;
        goto out;
    }
    fprintf(stderr,
            "tsd-helper %s: ready (opencv %s, %s model, input %dx%d, %zu classes, "
            "%d threads, max frame %zu bytes, sandbox %s)\n",
            TSD_VERSION, infer_opencv_version(),
            infer_model_type_str(srv.cfg->model_type), srv.cfg->input_width,
            srv.cfg->input_height, srv.cfg->num_classes, srv.cfg->threads,
            srv.cfg->max_frame_bytes, sandbox_filter_str(filter));
#ifdef TSD_HELPER_TEST_HOOKS
    helper_test_probe();
#endif
    result = serve_loop(&srv);

out:
    server_close(&srv);
    if (result != HELPER_OK)
        fprintf(stderr, "tsd-helper: exiting: %s\n", helper_result_str(result));
    return result;
}

/* --bench: reads the whole of path (at most max_bytes) into *ret_data. */
static enum helper_result read_frame_file(const char *path, size_t max_bytes,
                                          unsigned char **ret_data, size_t *ret_len)
{
    char why[HELPER_MAX_MESSAGE];
    char *data = NULL;
    size_t len = 0;

    switch (read_file_whole(path, max_bytes, &data, &len, why, sizeof(why))) {
    case FDIO_READ_OK:
        break;
    case FDIO_READ_ERR_TOO_BIG:
        fprintf(stderr, "tsd-helper: bench: %s (max_frame_bytes)\n", why);
        return HELPER_ERR_USAGE;
    case FDIO_READ_ERR_NOMEM:
        fprintf(stderr, "tsd-helper: bench: %s\n", why);
        return HELPER_ERR_FAILED;
    case FDIO_READ_ERR_IO:
    default:
        fprintf(stderr, "tsd-helper: bench: %s\n", why);
        return HELPER_ERR_USAGE;
    }
    if (len == 0) {
        fprintf(stderr, "tsd-helper: bench: %s is empty\n", path);
        free(data);
        return HELPER_ERR_USAGE;
    }
    *ret_data = (unsigned char *)data;
    *ret_len = len;
    return HELPER_OK;
}

static int compare_ms(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Sorts times in place. */
static double median_ms(double *times, size_t count)
{
    qsort(times, count, sizeof(*times), compare_ms);
    return count % 2 ? times[count / 2] : (times[count / 2 - 1] + times[count / 2]) / 2.0;
}

static enum helper_result bench(const char *config_path, const char *frame_path, unsigned repeat)
{
    struct server srv = {.out_fd = -1};
    char err[HELPER_MAX_MESSAGE] = "";
    char why[HELPER_MAX_MESSAGE] = "";
    char summary[256];
    unsigned char *jpeg = NULL;
    double *times = NULL;
    size_t jpeg_len = 0;
    size_t count = 0;
    size_t reply_len = 0;
    struct jpg_output decoded = {0};
    enum sandbox_filter filter = SANDBOX_FILTER_FAILED;
    const char *sandbox = NULL;
    double entered = now_ms_precise();
    double start_ms = 0.0;
    double median = 0.0;
    double max = 0.0;
    float top_score = 0.0f;
    int summary_len;
    enum helper_result result = server_open(&srv, config_path);

    if (result != HELPER_OK)
        goto out;
    /* Read before the sandbox, which forbids open. */
    result = read_frame_file(frame_path, srv.cfg->max_frame_bytes, &jpeg, &jpeg_len);
    if (result != HELPER_OK)
        goto out;
    times = calloc(repeat, sizeof(*times));
    if (!times) {
        fprintf(stderr, "tsd-helper: out of memory\n");
        result = HELPER_ERR_FAILED;
        goto out;
    }
    result = enter_sandbox(&srv, &filter, err, sizeof(err));
    if (result != HELPER_OK)
        goto out;
    start_ms = now_ms_precise() - entered;
    sandbox = sandbox_filter_str(filter);
    if (filter == SANDBOX_FILTER_FAILED) {
        fprintf(stderr,
                "tsd-helper: bench: cannot lock the sandbox (%s); running UNSANDBOXED, "
                "which --bench allows because its only input is %s, a local file named on "
                "the command line, never frames from the plugin\n",
                err, frame_path);
        sandbox = "none (cannot be locked here)";
    }
    for (unsigned i = 0; i < repeat; i++) {
        double started = now_ms_precise();

        if (!detect_jpeg(&srv, jpeg, jpeg_len, &decoded, &count, why, sizeof(why))) {
            fprintf(stderr, "tsd-helper: bench: %s: %s\n", frame_path, why);
            result = HELPER_ERR_USAGE;
            goto out;
        }
        times[i] = now_ms_precise() - started;
        if (times[i] > max)
            max = times[i];
    }
    top_score = infer_detector_top_score(srv.detector);
    if (reply_detections((char *)srv.reply + FRAME_HEADER_LEN, srv.reply_cap, 0,
                         times[repeat - 1], decoded.info.width, decoded.info.height,
                         srv.detections, count, srv.class_names, srv.cfg->num_classes,
                         &reply_len) != REPLY_OK) {
        fprintf(stderr, "tsd-helper: bench: detections do not fit in the reply\n");
        result = HELPER_ERR_FAILED;
        goto out;
    }
    median = median_ms(times, repeat);
    summary_len = snprintf(summary, sizeof(summary),
                           "{\"frames\":%u,\"start_ms\":%.1f,\"median_ms\":%.1f,"
                           "\"max_ms\":%.1f,\"top_score\":%.4f,\"detections\":%zu,"
                           "\"sandbox\":\"%s\"}\n",
                           repeat, start_ms, median, max, (double)top_score, count, sandbox);
    if (!write_all(srv.out_fd, srv.reply + FRAME_HEADER_LEN, reply_len) ||
        !write_all(srv.out_fd, "\n", 1) ||
        summary_len < 0 || (size_t)summary_len >= sizeof(summary) ||
        !write_all(srv.out_fd, summary, (size_t)summary_len)) {
        fprintf(stderr, "tsd-helper: bench: cannot write the results\n");
        result = HELPER_ERR_FAILED;
        goto out;
    }
    fprintf(stderr,
            "tsd-helper %s: bench: %u frames of %s (%dx%d): median %.1f ms, max %.1f ms "
            "(model loaded in %.1f ms); top score %.4f, %zu detections above box_threshold "
            "%.2f; sandbox %s\n",
            TSD_VERSION, repeat, frame_path, decoded.info.width, decoded.info.height, median, max,
            start_ms, (double)top_score, count, (double)srv.cfg->box_threshold, sandbox);

out:
    free(times);
    free(jpeg);
    server_close(&srv);
    if (result != HELPER_OK)
        fprintf(stderr, "tsd-helper: exiting: %s\n", helper_result_str(result));
    return result;
}

static void usage(FILE *stream)
{
    fprintf(stream, "usage: tsd-helper --version | --self-check | --config FILE\n"
                    "       tsd-helper --bench FILE JPEG [--repeat N]  (N: 1..%u, default %u)\n",
            HELPER_BENCH_MAX_REPEAT, HELPER_BENCH_REPEAT);
}

/* --repeat's value: 1..HELPER_BENCH_MAX_REPEAT, digits only. */
static bool parse_repeat(const char *text, unsigned *ret_repeat)
{
    unsigned long value = 0;
    char *end = NULL;

    if (text[0] < '0' || text[0] > '9')
        return false;
    errno = 0;
    value = strtoul(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < 1 || value > HELPER_BENCH_MAX_REPEAT)
        return false;
    *ret_repeat = (unsigned)value;
    return true;
}

int main(int argc, char **argv)
{
    unsigned repeat = HELPER_BENCH_REPEAT;

    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("tsd-helper %s (opencv %s)\n", TSD_VERSION, infer_opencv_version());
        return HELPER_OK;
    }
    if (argc == 2 && strcmp(argv[1], "--self-check") == 0)
        return self_check();
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return HELPER_OK;
    }
    if (argc == 3 && strcmp(argv[1], "--config") == 0)
        return serve(argv[2]);
    if (argc == 6 && strcmp(argv[1], "--bench") == 0 && strcmp(argv[4], "--repeat") == 0) {
        if (!parse_repeat(argv[5], &repeat)) {
            fprintf(stderr, "tsd-helper: --repeat takes 1..%u frames, not \"%s\"\n",
                    HELPER_BENCH_MAX_REPEAT, argv[5]);
            return HELPER_ERR_USAGE;
        }
        return bench(argv[2], argv[3], repeat);
    }
    if (argc == 4 && strcmp(argv[1], "--bench") == 0)
        return bench(argv[2], argv[3], repeat);
    usage(stderr);
    return HELPER_ERR_USAGE;
}
