/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fmt_internal.h - internals of libfsformat (fs/format), shared by its
 * files (format detection, the pickle reader, the zip reader, the scanner,
 * the safetensors checker) and by its one client above, the transcoder
 * (fs/transcode), which walks the pickle's value graph and reads zip
 * members. Nothing else includes it (tests/layout checks).
 *
 * Three layers:
 *   - struct mfs_stream: a sequential byte source (a range of a file read
 *     through an mfs_pread_fn, optionally inflated). Readers never seek back,
 *     so a multi-GiB member is scanned in bounded memory.
 *   - struct mfs_pickle: the restricted, non-executing pickle reader. It
 *     models the stack, memo and marks symbolically and builds a value graph
 *     (struct mfs_pnode) that the transcoder walks to find the
 *     _rebuild_tensor_v2(persistent storage, offset, size, stride) calls.
 *   - struct mfs_zip: a central-directory zip reader that locates member data
 *     through the local headers, the way torch's miniz does.
 */
#ifndef MODELFS_FMT_INTERNAL_H
#define MODELFS_FMT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "fsformat.h"

/* ------------------------------------------------------------------ streams */

enum mfs_stream_kind {
	MFS_STREAM_RAW = 0, /* bytes [off, end) of the underlying file */
	MFS_STREAM_INFLATE, /* raw deflate (zip method 8) of bytes [off, end) */
	MFS_STREAM_ZLIB,    /* zlib or gzip stream (auto-detected header) */
};

struct mfs_stream {
	enum mfs_stream_kind kind;
	mfs_pread_fn rd;
	void *ctx;
	uint64_t off, end;  /* next input offset and end of the input range */
	uint64_t pos;       /* bytes produced so far */
	uint64_t out_limit; /* inflate: refuse to produce more than this */
	/* inflate state */
	z_stream z;
	bool z_init, z_end;
	uint8_t *in;
	int err; /* sticky negative errno */
};

/* Opens a raw range [off, off+len) of @rd. Never fails. */
void mfs_stream_raw(struct mfs_stream *s, mfs_pread_fn rd, void *ctx, uint64_t off, uint64_t len);
/*
 * Opens a decompressing stream over [off, off+len): raw deflate when @zlib is
 * false, zlib/gzip (header auto-detected) when true. Output beyond @out_limit
 * fails with -EFBIG. Return: 0 or -ENOMEM.
 */
int mfs_stream_inflate(struct mfs_stream *s, mfs_pread_fn rd, void *ctx, uint64_t off, uint64_t len,
                       bool zlib, uint64_t out_limit);
/*
 * Reads up to @len bytes. Return: bytes read, 0 at the end of the stream,
 * -EBADMSG for a corrupt compressed stream, -EFBIG past out_limit, or the
 * errno of the underlying read.
 */
ssize_t mfs_stream_read(struct mfs_stream *s, void *buf, size_t len);
/* Reads until @len bytes or the end; returns the count or a negative errno. */
ssize_t mfs_stream_read_full(struct mfs_stream *s, void *buf, size_t len);
/* Releases inflate state. Safe on a raw or already closed stream. */
void mfs_stream_close(struct mfs_stream *s);

/* A pread over a memory buffer; @ctx is a struct mfs_membuf. */
struct mfs_membuf {
	const uint8_t *data;
	size_t len;
};
ssize_t mfs_mem_pread(void *ctx, void *buf, size_t len, uint64_t off);

/* ------------------------------------------------------------ pickle reader */

/* Hard limits. Exceeding one ends the parse with a verdict, never an OOM. */
struct mfs_pickle_limits {
	uint64_t max_ops;       /* opcodes per stream */
	uint32_t max_memo;      /* memo entries per pickle */
	uint32_t max_stack;     /* stack depth */
	uint32_t max_marks;     /* nesting depth of MARKs */
	uint64_t max_len;       /* one string/bytes argument */
	uint64_t max_expansion; /* bytes of value graph: nodes, children, strings */
	uint32_t max_globals;   /* global references recorded */
};

/* Defaults documented in docs/scanner.md. */
extern const struct mfs_pickle_limits mfs_pickle_default_limits;

enum mfs_pk_kind {
	MFS_PK_NONE = 1,
	MFS_PK_BOOL,
	MFS_PK_INT,  /* fits int64: .i */
	MFS_PK_LONG, /* larger integer: .s holds LE two's complement bytes or decimal text */
	MFS_PK_FLOAT,
	MFS_PK_STR,   /* str: .s (UTF-8, NUL-terminated) unless .big */
	MFS_PK_BYTES, /* bytes / bytearray: .s unless .big; .off is the payload offset */
	MFS_PK_TUPLE, /* items in kids */
	MFS_PK_LIST,
	MFS_PK_DICT, /* kids holds key, value, key, value, ... */
	MFS_PK_SET,
	MFS_PK_FROZENSET,
	MFS_PK_GLOBAL, /* .a = index into globals */
	MFS_PK_CALL,   /* REDUCE: .a = callable, .b = args */
	MFS_PK_OBJ,    /* NEWOBJ/NEWOBJ_EX/OBJ/INST: .a = class, .b = args, .c = kwargs */
	MFS_PK_PERSID, /* persistent load: .a = pid */
	MFS_PK_EXT,    /* extension registry code: .i */
	MFS_PK_BUFFER, /* out-of-band buffer (protocol 5) */
};

/*
 * One value. Ids are indices into mfs_pickle.nodes; 0 means "none". Objects
 * made by CALL/OBJ also collect APPEND/SETITEM(S) items in kids (dict-like
 * pairs for SETITEM, single items for APPEND) and their BUILD state in .st.
 */
struct mfs_pnode {
	uint8_t kind;
	bool big;  /* STR/BYTES/LONG too long to keep: only off/len known */
	bool text; /* LONG given as decimal text (protocol 0) */
	uint32_t a, b, c, st;
	uint32_t n, cap;
	uint32_t *kids;
	int64_t i;
	double f;
	char *s;
	uint64_t len;
	uint64_t off; /* stream offset of the opcode (payload for STR/BYTES) */
};

struct mfs_pglobal {
	char *module;
	char *name;
	uint64_t offset;
	enum mfs_verdict cls; /* safe, suspicious or unsafe */
};

struct mfs_preason {
	enum mfs_verdict level;
	char *text;
};

enum mfs_pk_fail {
	MFS_PK_OK = 0,
	MFS_PK_MALFORMED, /* the bytes are not a valid pickle here */
	MFS_PK_TRUNCATED, /* the stream ended inside a pickle */
	MFS_PK_LIMIT,     /* a hard limit that benign data never reaches (adversarial) */
	MFS_PK_TOOBIG,    /* a size limit a huge benign pickle could reach */
	MFS_PK_IO,        /* the underlying read failed */
};

struct mfs_pmemo;

struct mfs_pickle {
	const struct mfs_pickle_limits *lim;
	struct mfs_stream *src;
	/* input window */
	uint8_t *buf;
	size_t bpos, blen;
	uint64_t boff; /* stream offset of buf[0] */
	/* value graph (persists across the pickles of one stream) */
	struct mfs_pnode *nodes;
	uint32_t nnodes, capnodes;
	uint64_t expansion;
	/* per-pickle machine state */
	uint32_t *stack;
	uint32_t sp, capstack;
	uint32_t *marks;
	uint32_t nmarks, capmarks;
	struct mfs_pmemo *memo;
	/* findings */
	struct mfs_pglobal *globals;
	uint32_t nglobals, capglobals;
	struct mfs_preason *reasons;
	uint32_t nreasons, capreasons;
	uint32_t *persids; /* PERSID node ids, in stream order */
	uint32_t npersids, cappersids;
	uint64_t ops;
	uint32_t pickles;       /* pickles completed (STOP reached) */
	bool seen_import;       /* a GLOBAL/INST/STACK_GLOBAL/EXT was parsed */
	bool seen_named_import; /* ... naming a dotted identifier (not EXT) */
	bool seen_proto;        /* this stream's first pickle began with PROTO */
	/*
	 * Set by the caller: read as plain pickle.load does, which has no
	 * persistent_load and stops at a persistent id (the byte-0 test of a
	 * file that is also something else).
	 */
	bool persid_stops;
	uint64_t first_ops; /* opcodes of the current pickle */
	/* failure */
	enum mfs_pk_fail fail;
	int fail_errno;
	uint64_t fail_off;
	char fail_msg[160];
};

/**
 * mfs_pickle_init() - prepare a reader over @src
 * @p: out: the reader
 * @src: in: the stream (not owned)
 * @lim: in: limits, or NULL for the defaults
 * Return: 0 or -ENOMEM.
 */
int mfs_pickle_init(struct mfs_pickle *p, struct mfs_stream *src,
                    const struct mfs_pickle_limits *lim);
void mfs_pickle_free(struct mfs_pickle *p);

/**
 * mfs_pickle_next() - parse one pickle (up to and including its STOP)
 * @p: in/out: the reader
 * @root: out: the node id STOP returned
 *
 * Return: 1 when a pickle was read, 0 at a clean end of stream (no byte
 * left), or -EBADMSG when the parse failed (p->fail says why).
 */
int mfs_pickle_next(struct mfs_pickle *p, uint32_t *root);

/*
 * Stream offset of the next unparsed byte: after mfs_pickle_next() returned
 * 1, the byte after that pickle's STOP (where legacy torch storages begin).
 */
uint64_t mfs_pickle_offset(const struct mfs_pickle *p);

/* True when no byte is left in the stream (may read ahead). */
bool mfs_pickle_at_eof(struct mfs_pickle *p);

/**
 * mfs_pickle_add_reason() - record a finding with the verdict it implies
 * @p: in/out: the reader
 * @level: in: suspicious, unscannable or unsafe
 * @fmt: in: printf format of a short reason
 */
void mfs_pickle_add_reason(struct mfs_pickle *p, enum mfs_verdict level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The allowlist (pickle_allow.c): safe, suspicious or unsafe for a global module.name. */
enum mfs_verdict mfs_global_class(const char *module, const char *name);

/*
 * safetensors dtypes, in the reference implementation's order: ascending
 * alignment. The writer sorts tensors by this rank, descending, then by
 * name, as the reference does, so every tensor's data stays aligned.
 */
enum mfs_st_dtype {
	MFS_ST_BOOL = 0,
	MFS_ST_U8,
	MFS_ST_I8,
	MFS_ST_F8_E5M2,
	MFS_ST_F8_E4M3,
	MFS_ST_I16,
	MFS_ST_U16,
	MFS_ST_F16,
	MFS_ST_BF16,
	MFS_ST_I32,
	MFS_ST_U32,
	MFS_ST_F32,
	MFS_ST_F64,
	MFS_ST_I64,
	MFS_ST_U64,
	MFS_ST_NDTYPES,
};

/* "F32", ...; NULL when out of range. */
const char *mfs_st_dtype_name(int dt);
/* Element size in bytes; 0 when out of range. */
unsigned mfs_st_dtype_size(int dt);
/* Parses a dtype name of @len bytes; -1 when unknown. */
int mfs_st_dtype_parse(const char *s, size_t len);

/* The reference refuses headers larger than this. */
#define MFS_ST_MAX_HEADER 100000000u
/* mfs_torch_type.st of UntypedStorage: bytes, typed by each tensor. */
#define MFS_TORCH_UNTYPED (-1)
/* mfs_torch_type.st of a dtype safetensors cannot hold. */
#define MFS_TORCH_NO_ST (-2)

/*
 * One torch element type (pickle_allow.c): the one table of dtypes and storage
 * classes, read by the allowlist and by the transcoder.
 */
struct mfs_torch_type {
	const char *dtype;   /* torch.<dtype> name; NULL for UntypedStorage */
	const char *alias;   /* its other torch name (torch.float), or NULL */
	const char *storage; /* legacy storage class torch.<X>Storage, or NULL */
	unsigned size;       /* element size in bytes */
	int st;              /* enum mfs_st_dtype, MFS_TORCH_UNTYPED or MFS_TORCH_NO_ST */
	bool quantized;      /* a quantized dtype */
};
extern const struct mfs_torch_type mfs_torch_types[];
extern const size_t mfs_n_torch_types;

/**
 * mfs_torch_storage() - look up a torch storage class
 * @cls: in: class name in module torch, e.g. "FloatStorage"
 *
 * Return: its row of mfs_torch_types, or NULL if torch has no such storage.
 */
const struct mfs_torch_type *mfs_torch_storage(const char *cls);

/**
 * mfs_torch_dtype() - look up a torch dtype
 * @name: in: dtype name or alias in module torch, e.g. "float32", "half"
 *
 * Return: its row of mfs_torch_types, or NULL if torch has no such dtype.
 */
const struct mfs_torch_type *mfs_torch_dtype(const char *name);

/* Node accessor; NULL for id 0 or out of range. */
const struct mfs_pnode *mfs_pickle_node(const struct mfs_pickle *p, uint32_t id);

/*
 * The reader's own parts, shared by pickle.c (the machine), pickle_lit.c
 * (literal opcodes) and pickle_obj.c (imports, calls, objects) and by no
 * other file. Each returns 0 or -EBADMSG after recording the failure in
 * p->fail (mfs_pk_set_fail), unless it says otherwise.
 */
#define PK_MAXLINE 4096u /* protocol-0 argument lines */
#define PK_INLINE  4096u /* strings longer than this are not kept */

/* Records the first failure of @p; returns -EBADMSG. */
int mfs_pk_set_fail(struct mfs_pickle *p, enum mfs_pk_fail kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Makes @n (at most the window) bytes available at buf[bpos]. */
int mfs_pk_need(struct mfs_pickle *p, size_t n);
/* Skips @n payload bytes that are not kept. */
int mfs_pk_skip(struct mfs_pickle *p, uint64_t n);
/* Reads a protocol-0 argument line, NUL-terminated in the window. */
int mfs_pk_line(struct mfs_pickle *p, const char **line, size_t *len);
/* Reads a little-endian unsigned integer of @n bytes (n <= 8). */
int mfs_pk_le(struct mfs_pickle *p, unsigned n, uint64_t *v);
/* Charges @bytes to the value graph's expansion limit. */
int mfs_pk_charge(struct mfs_pickle *p, uint64_t bytes);
/* Creates a node of @kind for the opcode at @off; its id in *@id. */
int mfs_pk_new(struct mfs_pickle *p, uint8_t kind, uint64_t off, uint32_t *id);
/* Appends @kid to node @id's children. */
int mfs_pk_kid(struct mfs_pickle *p, uint32_t id, uint32_t kid);
/* Gives node @id a copy of @s (@len bytes, NUL-terminated). */
int mfs_pk_setstr(struct mfs_pickle *p, uint32_t id, const void *s, size_t len);
/* Stack of the current frame (above the topmost mark). */
int mfs_pk_push(struct mfs_pickle *p, uint32_t id);
int mfs_pk_pop(struct mfs_pickle *p, uint32_t *id);
int mfs_pk_top(struct mfs_pickle *p, uint32_t *id);
/* Pops the topmost mark; the items above it are stack[*base .. sp). */
int mfs_pk_popmark(struct mfs_pickle *p, uint32_t *base);

/* Literal opcodes (pickle_lit.c); @off is the opcode's stream offset. */
int mfs_pk_op_string(struct mfs_pickle *p, uint64_t off);
int mfs_pk_op_unicode(struct mfs_pickle *p, uint64_t off);
int mfs_pk_op_int(struct mfs_pickle *p, uint64_t off, bool is_long);
int mfs_pk_op_float(struct mfs_pickle *p, uint64_t off);
int mfs_pk_op_binfloat(struct mfs_pickle *p, uint64_t off);
int mfs_pk_op_long_bin(struct mfs_pickle *p, uint64_t n, uint64_t off);
int mfs_pk_op_sized(struct mfs_pickle *p, uint8_t kind, unsigned lenbytes, bool is_signed,
                    uint64_t off);
int mfs_pk_push_int(struct mfs_pickle *p, int64_t v, uint64_t off);
/* Parses a protocol-0 integer line; 0, or -1 when malformed (no failure recorded). */
int mfs_pk_parse_int_line(const char *l, size_t n, int64_t *v, bool *big);

/* Imports, calls and objects (pickle_obj.c). */
int mfs_pk_op_global(struct mfs_pickle *p, uint64_t off);
int mfs_pk_op_stack_global(struct mfs_pickle *p, uint64_t off);
int mfs_pk_op_inst(struct mfs_pickle *p, uint64_t off);
int mfs_pk_op_obj(struct mfs_pickle *p, uint64_t off);
int mfs_pk_op_reduce(struct mfs_pickle *p, uint64_t off);
int mfs_pk_op_newobj(struct mfs_pickle *p, uint64_t off, bool ex);
int mfs_pk_op_build(struct mfs_pickle *p, uint64_t off);
int mfs_pk_op_ext(struct mfs_pickle *p, unsigned nbytes, uint64_t off);
int mfs_pk_op_persid(struct mfs_pickle *p, uint32_t pid, uint64_t off, bool text);

/* ----------------------------------------------------------------- zip reader */

struct mfs_zip_entry {
	char *name; /* central directory name, NUL-terminated */
	char *local_name;
	uint16_t flags, method, local_method;
	uint64_t comp_size, uncomp_size;
	uint64_t local_comp, local_uncomp; /* 0 when the local header defers to a descriptor */
	uint64_t header_off;               /* local header */
	uint64_t data_off;                 /* first data byte (valid when !bad_local) */
	bool bad_local;                    /* local header missing or unreadable */
	bool mismatch;                     /* CD and local header disagree */
	bool overlap;                      /* data overlaps an earlier member: not scanned */
	bool hidden;                       /* a local entry the central directory does not list */
	char why[128];                     /* first anomaly of this entry */
};

struct mfs_zip {
	mfs_pread_fn rd;
	void *ctx;
	uint64_t size;
	struct mfs_zip_entry *e; /* the central directory's entries */
	size_t n;
	/*
	 * Local entries found between the listed members that the central
	 * directory does not name (streaming unzip tools extract them): name,
	 * method and sizes from the local header alone.
	 */
	struct mfs_zip_entry *hidden;
	size_t nhidden;
	uint64_t base; /* bytes before the archive (tail mode; zipfile's "concat") */
	bool tail;     /* opened as zipfile finds an archive at the end of a file */
	bool zip64;
	char anomaly[160]; /* archive-level anomaly, "" when none */
};

/* Limits of the zip reader. */
#define MFS_ZIP_MAX_ENTRIES (1u << 20)
#define MFS_ZIP_MAX_CD      (256u << 20)
#define MFS_ZIP_MAX_HIDDEN  64

/**
 * mfs_zip_open() - read the central directory and every local header
 * @z: out: the archive (free with mfs_zip_close even on failure)
 * @rd, @ctx, @size: in: the file
 * Return: 0; -EBADMSG when no usable central directory exists (z->anomaly
 * says why); -ENOMEM; or the errno of @rd.
 */
int mfs_zip_open(struct mfs_zip *z, mfs_pread_fn rd, void *ctx, uint64_t size);
/*
 * mfs_zip_open_mode() - as mfs_zip_open(); with @tail, reads an archive that
 * may sit at the end of another file, as Python's zipfile does (offsets
 * shifted by the bytes before it, z->base). Without @tail, an archive whose
 * offsets would need such a shift is read as torch reads it, with an anomaly.
 */
int mfs_zip_open_mode(struct mfs_zip *z, mfs_pread_fn rd, void *ctx, uint64_t size, bool tail);
void mfs_zip_close(struct mfs_zip *z);

/**
 * mfs_zip_stream() - open a member's data as a stream
 * @z: in: archive
 * @i: in: entry index
 * @s: out: stream (close with mfs_stream_close)
 * @limit: in: most bytes to produce when inflating
 * Return: 0; -EOPNOTSUPP for a compression method other than stored/deflate;
 * -EBADMSG when the local header is unusable or the data runs past the file.
 */
int mfs_zip_stream(const struct mfs_zip *z, size_t i, struct mfs_stream *s, uint64_t limit);
/* As mfs_zip_stream(), for entry @e of @z (listed or hidden). */
int mfs_zip_entry_stream(const struct mfs_zip *z, const struct mfs_zip_entry *e,
                         struct mfs_stream *s, uint64_t limit);

/* ----------------------------------------------------------------- tar */

/* Parses a tar numeric field (octal, or GNU base-256); false if malformed. */
bool mfs_tar_num(const uint8_t *f, size_t n, uint64_t *v);
/* Checks a 512-byte tar header's checksum. */
bool mfs_tar_header_ok(const uint8_t *h);

/* ------------------------------------------------------- strict formats */

/* Reads up to @len bytes at @off (short only at the end); count or -errno. */
ssize_t mfs_read_at(mfs_pread_fn rd, void *ctx, void *buf, size_t len, uint64_t off);

/*
 * Strict recognisers (fmt_strict.c). Each sets *@ok when the whole header
 * parses by its format's rules, and returns 0 or the negative errno of @rd
 * (malformed bytes are *@ok = false, not an error).
 *   GGUF: v2/v3, every metadata pair and tensor info to the end, known
 *         tensor types, aligned offsets, tensor data inside the file.
 *   ONNX: every top-level ModelProto field with its wire type, to the last
 *         byte; ir_version and graph present.
 *   npy:  a complete header dict without object dtype; for a simple dtype,
 *         data exactly shape x itemsize bytes.
 *   JSON: a whole object or array (files up to 64 MiB).
 */
int mfs_gguf_check(mfs_pread_fn rd, void *ctx, uint64_t size, bool *ok);
int mfs_onnx_check(mfs_pread_fn rd, void *ctx, uint64_t size, bool *ok);
int mfs_npy_check(mfs_pread_fn rd, void *ctx, uint64_t size, bool *ok);
int mfs_json_check(mfs_pread_fn rd, void *ctx, uint64_t size, bool *ok);

/* Valid UTF-8 with no control byte but JSON's whitespace (\t \n \r). */
bool mfs_json_bytes_ok(const char *s, size_t n);
/* Valid UTF-8 text without NUL or control bytes; @prefix: may end mid-sequence. */
bool mfs_is_text(const uint8_t *s, size_t n, bool prefix);

/**
 * mfs_format_strict() - what a file is, pickle-ness aside
 * @rd, @ctx, @size: in: the file (random access)
 * @out: out: safetensors, gguf, onnx, npy, zip (a zip archive at the head,
 *       whatever it holds), json, text, empty or unknown; never pickle
 * Return: 0 or the negative errno of @rd.
 */
int mfs_format_strict(mfs_pread_fn rd, void *ctx, uint64_t size, enum mfs_format *out);

/* ----------------------------------------------------------------- sniffing */

/* npy header facts. */
struct mfs_npy_info {
	uint64_t data_off; /* first byte after the header */
	bool object;       /* dtype holds Python objects: a pickle follows */
};

/**
 * mfs_npy_parse() - parse an npy header from its first bytes
 * @buf, @len: in: the first bytes of the file (at least the header)
 * @out: out: facts
 * Return: 0, or -EBADMSG when the header is malformed or does not fit in @len.
 */
int mfs_npy_parse(const uint8_t *buf, size_t len, struct mfs_npy_info *out);

/* True when @buf starts with the pickle PROTO opcode and protocol 0..5. */
bool mfs_sniff_proto(const uint8_t *buf, size_t len);

/* ----------------------------------------------------------------- scanner */

/*
 * What scan.c (the report, pickle streams, routing) and scan_container.c
 * (npy, keras, zip, tar, nested archives) share, and no other file uses.
 */
/* What is being scanned: a random-access range, or a zip member's stream. */
struct mfs_blob {
	mfs_pread_fn rd; /* random access (NULL for a compressed zip member) */
	void *ctx;
	uint64_t size;
	const struct mfs_zip *z; /* else: member ze of z */
	const struct mfs_zip_entry *ze;
	bool zlib; /* else: a zlib/gzip stream over rd */
};

struct mfs_subrange {
	mfs_pread_fn rd;
	void *ctx;
	uint64_t base, len;
};

struct mfs_scanner {
	struct mfs_scan_report *rep;
	int err;             /* first I/O error: the scan fails with it */
	enum mfs_format top; /* strict format of the whole file (mfs_format_strict) */
};

/* Options of one pickle-stream scan. */
struct mfs_pk_opts {
	uint64_t skip; /* bytes before the pickle (npy header) */
	bool lenient;  /* another format matched: a failed parse without imports is no pickle */
	bool legacy;   /* allow the legacy torch layout */
};

/* A pread over bytes [base, base + len) of another reader; @ctx is a struct mfs_subrange. */
ssize_t mfs_scan_sub_pread(void *ctx, void *buf, size_t len, uint64_t off);
/*
 * Reads @b from its start into a malloc'd buffer (NUL-terminated) of at
 * most @max bytes; *@more tells whether data was left over. Return: 0, or
 * the negative errno of the stream (-EBADMSG corrupt data).
 */
int mfs_scan_read_upto(const struct mfs_blob *b, size_t max, uint8_t **out, size_t *len,
                       bool *more);

/* Item @i of the report (valid until the next mfs_scan_item_new()). */
struct mfs_scan_item *mfs_scan_item_at(struct mfs_scanner *sc, size_t i);
/* Appends an item; its index, or -ENOMEM. */
ssize_t mfs_scan_item_new(struct mfs_scanner *sc, const char *member, const char *kind);
/* Raises @it's verdict to @v (never lowers it). */
void mfs_scan_item_level(struct mfs_scan_item *it, enum mfs_verdict v);
/* Adds a reason line and raises the verdict to @v. */
void mfs_scan_item_reason(struct mfs_scan_item *it, enum mfs_verdict v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Marks item @ii as two things at once (docs/scanner.md, "polyglot"). */
void mfs_scan_polyglot(struct mfs_scanner *sc, size_t ii, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Scans every pickle of @b's stream into item @ii (scan.c); with @keys,
 * returns the storage keys the pickles reference. 0 or a negative errno.
 */
int mfs_scan_pickles(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii,
                     const struct mfs_pk_opts *o, char ***keys, size_t *nkeys);
/* Scans @b, whatever it holds, into item @ii (scan.c). 0 or a negative errno. */
int mfs_scan_blob(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii, const char *prefix,
                  int depth);

/* The containers (scan_container.c); each 0 or a negative errno. */
int mfs_scan_npy(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii);
/* A zip at the head of @b, or with @tail, one found at its end (a polyglot). */
int mfs_scan_zip(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii, const char *prefix,
                 int depth, bool tail);
/* A zip, or with @tar a tar, that needs random access: inflated in memory when small. */
int mfs_scan_nested(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii, const char *prefix,
                    int depth, bool tar);

#endif /* MODELFS_FMT_INTERNAL_H */
