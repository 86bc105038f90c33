/*
 * tools/onnxb/onnxb.h — a small ONNX graph builder over protobuf-c, shared by
 * the build-time tools that write ONNX files (tfjs2onnx's graph converter and
 * its architecture builders, mkclip).
 *
 * A builder collects nodes, initializers and graph inputs/outputs as
 * protobuf-c structs. Every struct, string and array it makes is allocated
 * through the builder and freed by onnxb_free(), so a tool builds a graph
 * without tracking a single allocation. Initializer data is referenced, not
 * copied: it must stay alive until onnxb_pack() returns (weights the caller
 * owns, or memory from onnxb_alloc()).
 *
 * Output is deterministic: protobuf-c packs fields in a fixed order, so the
 * same calls in the same order give the same bytes (the model sha256 pins in
 * model specs under models/ depend on it).
 *
 * Small allocations abort on failure (util/xalloc); only the final packed
 * buffer, which can be large, is checked and reported.
 */
#ifndef INFERD_TOOLS_ONNXB_H
#define INFERD_TOOLS_ONNXB_H

#include <stddef.h>
#include <stdint.h>

#include "onnx.pb-c.h"
#include "util/err.h"

typedef struct {
    const char *batch_param; /* symbolic name for a negative dimension */
    void **allocs;
    size_t nallocs, capallocs;
    Onnx__NodeProto **nodes;
    size_t nnodes, capnodes;
    Onnx__TensorProto **inits;
    size_t ninits, capinits;
    Onnx__ValueInfoProto **inputs, **outputs;
    size_t ninputs, noutputs, capinputs, capoutputs;
} onnxb;

/*
 * Starts an empty graph. Negative dimensions given to onnxb_value() become
 * the symbolic dimension `batch_param` (a string with static storage, e.g.
 * "N"). Release with onnxb_free().
 */
void onnxb_init(onnxb *b, const char *batch_param);

/* Frees everything the builder allocated; safe on a zeroed or freed builder. */
void onnxb_free(onnxb *b);

/* Zeroed memory of `n` bytes (at least 1) that lives until onnxb_free(). */
void *onnxb_alloc(onnxb *b, size_t n);

/* printf into a string that lives until onnxb_free(). */
char *onnxb_fmt(onnxb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Appends a node `op` named `name` with inputs in[0..nin) and one output
 * `out` (all strings copied). Nodes must be added in topological order.
 * Returns the node, for attributes; it lives until onnxb_free().
 */
Onnx__NodeProto *onnxb_node(onnxb *b, const char *op, const char *name, int nin,
                            const char *const *in, const char *out);

/* Attributes of node `n`, appended in call order. */
void onnxb_attr_int(onnxb *b, Onnx__NodeProto *n, const char *name, int64_t v);
void onnxb_attr_float(onnxb *b, Onnx__NodeProto *n, const char *name, float v);
void onnxb_attr_ints(onnxb *b, Onnx__NodeProto *n, const char *name, const int64_t *v, int cnt);
void onnxb_attr_str(onnxb *b, Onnx__NodeProto *n, const char *name, const char *s);

/*
 * Adds the initializer `name` of ONNX element type `dtype` and shape
 * dims[0..rank) whose raw little-endian bytes are data[0..nbytes). `data` is
 * referenced, not copied (see the file comment).
 */
void onnxb_init_tensor(onnxb *b, const char *name, int dtype, const int64_t *dims, int rank,
                       const void *data, size_t nbytes);

/*
 * A value description for a graph input or output: element type `elem`,
 * rank `rank` (negative: shape unknown) and dims (negative: the symbolic
 * batch dimension). Lives until onnxb_free().
 */
Onnx__ValueInfoProto *onnxb_value(onnxb *b, const char *name, int elem, int rank,
                                  const int64_t *dims);

/* Declares a graph input / output, in call order. */
void onnxb_input(onnxb *b, Onnx__ValueInfoProto *v);
void onnxb_output(onnxb *b, Onnx__ValueInfoProto *v);

/* What onnxb_pack() writes around the graph. */
typedef struct {
    const char *graph_name;
    const char *producer, *producer_version;
    int64_t ir_version; /* e.g. 8 */
    int64_t opset;      /* default domain opset, e.g. 13 */
} onnxb_model_info;

/*
 * Serialises the graph as a ModelProto. `*out` is malloc'd (the caller
 * frees it), `*outlen` its size. ERR_NOMEM when the buffer cannot be
 * allocated, ERR_INTERNAL when protobuf-c packs an unexpected size. The
 * builder is left as it was (pack again or free it).
 */
int onnxb_pack(const onnxb *b, const onnxb_model_info *info, uint8_t **out, size_t *outlen,
               err_t *e);

/*
 * Packs the graph as a ModelProto (IR 8, opset 13, producer "inferd-TOOL"), writes it
 * to `path` and frees the builder. 0 on success; -1 with "TOOL: why" on stderr.
 */
int onnxb_write_file(onnxb *b, const char *graph_name, const char *tool, const char *path);

/*
 * The next number of an xorshift64* stream, uniform in [-1, 1): seeded weights for the
 * test models the tools write (the same seed gives the same bytes). `*state` must not be 0.
 */
float onnxb_rand(uint64_t *state);

#endif
