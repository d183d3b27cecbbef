/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tx_internal.h - internals of the transcoder (libfstranscode,
 * fs/transcode), shared by transcode.c (the plan, from the pickle's value
 * graph), tx_torch.c (the zip and legacy checkpoint containers), tx_write.c
 * (writing the output), tx_names.c (file names, index.json) and st_write.c
 * (the safetensors header writer). The safetensors dtypes are the formats'
 * (fmt_internal.h).
 */
#ifndef MODELFS_TX_INTERNAL_H
#define MODELFS_TX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fstranscode.h"
#include "fmt_internal.h"

/* Most dimensions a tensor may have (torch's own limit is 64 too). */
#define MFS_TX_MAX_DIMS 64

/* One storage: a run of bytes in the checkpoint file. */
struct mfs_tx_storage {
	char *key;       /* persistent id key: zip member data/<key>, legacy record key */
	char *type;      /* storage class name, for messages */
	int dtype;       /* enum mfs_st_dtype, MFS_TORCH_UNTYPED (bytes) or MFS_TORCH_NO_ST */
	unsigned elsize; /* bytes per element of the storage class */
	uint64_t numel;  /* elements, as the persistent id says */
	uint64_t nbytes; /* numel * elsize */
	uint64_t off;    /* absolute file offset of the first data byte */
	bool used;       /* a tensor of the output reads it */
};

/* One tensor of the state_dict. */
struct mfs_tx_tensor {
	char *name; /* UTF-8, NUL-terminated (names holding NUL are refused) */
	int dtype;
	unsigned elsize;
	uint32_t ndim;
	uint64_t *shape;  /* ndim sizes */
	uint64_t *stride; /* ndim strides, in elements */
	uint64_t offset;  /* storage offset, in elements */
	uint32_t storage; /* index into plan->st */
	uint64_t nelem, nbytes;
	uint64_t lo, hi;   /* bytes of the storage it reads: [lo, hi) */
	bool contiguous;   /* C order: the bytes are exactly [lo, lo + nbytes) */
	bool removed;      /* shares its storage with a kept tensor (see metadata) */
	uint32_t kept;     /* when removed: the tensor kept in its place */
	uint64_t data_off; /* offset in the output's data section */
};

struct mfs_tx_plan {
	char *name; /* the input, for messages */
	struct mfs_tx_storage *st;
	size_t nst, capst;
	struct mfs_tx_tensor *t;
	size_t nt, capt;
	uint32_t *order; /* kept tensors in output order */
	size_t norder;
	bool swap;       /* storages hold big-endian elements */
	uint8_t *header; /* 8-byte length, JSON, space padding */
	size_t header_len;
	uint64_t data_len;
};

struct mfs_pickle;
struct mfs_pnode;

/* State of one plan being made (transcode.c, tx_torch.c). */
struct mfs_tx_walk {
	struct mfs_pickle *pk;
	struct mfs_tx_plan *p;
	struct mv_err *err;
	bool legacy;
	/* storage key -> index (open addressing, 0 = empty, else index + 1) */
	uint32_t *slots;
	size_t nslots;
};

/*
 * The walk of the value graph (transcode.c), for the containers
 * (tx_torch.c). Those returning int give 0 or a negative errno, with the
 * message in w->err.
 */
/* Node @id of the pickle being walked, or NULL. */
const struct mfs_pnode *mfs_tx_node(const struct mfs_tx_walk *w, uint32_t id);
/* The text of node @id: a kept str, UTF-8 without NUL bytes; else NULL. */
const char *mfs_tx_str(const struct mfs_tx_walk *w, uint32_t id);
/* True, with the value in *@v, when node @id is a non-negative integer. */
bool mfs_tx_uint(const struct mfs_tx_walk *w, uint32_t id, uint64_t *v);
/* Index of the storage with persistent-id key @key, or -1. */
ssize_t mfs_tx_storage_find(const struct mfs_tx_walk *w, const char *key);
/* Registers (or finds) the storage of persistent-id node @id; its index in *@idx. */
int mfs_tx_storage_ref(struct mfs_tx_walk *w, uint32_t id, uint32_t *idx);
/* Collects the tensors of the state_dict at node @root. */
int mfs_tx_walk_root(struct mfs_tx_walk *w, uint32_t root);
/* Handles tensors sharing memory as the reference converter does. */
int mfs_tx_dedupe_shared(struct mfs_tx_walk *w);

/**
 * mfs_st_build_header() - lay out the output of a plan
 * @p: in/out: a plan whose tensors and removed flags are final; fills
 *   order, data offsets, header and data_len
 * Return: 0, -EFBIG past the header limit, -EOVERFLOW, or -ENOMEM.
 */
int mfs_st_build_header(struct mfs_tx_plan *p);

#endif /* MODELFS_TX_INTERNAL_H */
