// SPDX-License-Identifier: Apache-2.0
/*
 * pickle_allow.c - the allowlist: which globals a pickle may name (safe),
 * which are known benign data types (suspicious) and which are not (unsafe),
 * and torch's element types, the one table of dtypes and storage classes.
 *
 * Separate from the reader (pickle.c) because it is policy, not parsing:
 * the scanner's verdicts and the transcoder's dtypes both come from here,
 * and changing what is allowed touches this file alone (docs/scanner.md).
 */
#include <string.h>

#include "fmt_internal.h"

/* -------------------------------------------------------------- allowlist */

/*
 * Every torch element type: one row per dtype, with the storage class torch
 * writes for it (legacy typed storages) and its safetensors equivalent. The
 * allowlist (mfs_global_class) and the transcoder (transcode.c) both read it.
 */
#define TT(dtype_, alias_, storage_, size_, st_, quantized_)                                       \
	{                                                                                          \
		.dtype = dtype_, .alias = alias_, .storage = storage_, .size = size_, .st = st_,   \
		.quantized = quantized_                                                            \
	}

const struct mfs_torch_type mfs_torch_types[] = {
    TT("float32", "float", "FloatStorage", 4, MFS_ST_F32, false),
    TT("float64", "double", "DoubleStorage", 8, MFS_ST_F64, false),
    TT("float16", "half", "HalfStorage", 2, MFS_ST_F16, false),
    TT("bfloat16", NULL, "BFloat16Storage", 2, MFS_ST_BF16, false),
    TT("int64", "long", "LongStorage", 8, MFS_ST_I64, false),
    TT("int32", "int", "IntStorage", 4, MFS_ST_I32, false),
    TT("int16", "short", "ShortStorage", 2, MFS_ST_I16, false),
    TT("int8", NULL, "CharStorage", 1, MFS_ST_I8, false),
    TT("uint8", NULL, "ByteStorage", 1, MFS_ST_U8, false),
    TT("bool", NULL, "BoolStorage", 1, MFS_ST_BOOL, false),
    TT("uint16", NULL, NULL, 2, MFS_ST_U16, false),
    TT("uint32", NULL, NULL, 4, MFS_ST_U32, false),
    TT("uint64", NULL, NULL, 8, MFS_ST_U64, false),
    TT("complex32", "chalf", NULL, 4, MFS_TORCH_NO_ST, false),
    TT("complex64", "cfloat", "ComplexFloatStorage", 8, MFS_TORCH_NO_ST, false),
    TT("complex128", "cdouble", "ComplexDoubleStorage", 16, MFS_TORCH_NO_ST, false),
    TT("qint8", NULL, "QInt8Storage", 1, MFS_TORCH_NO_ST, true),
    TT("quint8", NULL, "QUInt8Storage", 1, MFS_TORCH_NO_ST, true),
    TT("qint32", NULL, "QInt32Storage", 4, MFS_TORCH_NO_ST, true),
    TT("quint4x2", NULL, "QUInt4x2Storage", 1, MFS_TORCH_NO_ST, true),
    TT("quint2x4", NULL, "QUInt2x4Storage", 1, MFS_TORCH_NO_ST, true),
    TT("float8_e4m3fn", NULL, NULL, 1, MFS_ST_F8_E4M3, false),
    TT("float8_e5m2", NULL, NULL, 1, MFS_ST_F8_E5M2, false),
    TT("float8_e4m3fnuz", NULL, NULL, 1, MFS_TORCH_NO_ST, false),
    TT("float8_e5m2fnuz", NULL, NULL, 1, MFS_TORCH_NO_ST, false),
    TT("bits1x8", NULL, NULL, 1, MFS_TORCH_NO_ST, false),
    TT("bits2x4", NULL, NULL, 1, MFS_TORCH_NO_ST, false),
    TT("bits4x2", NULL, NULL, 1, MFS_TORCH_NO_ST, false),
    TT("bits8", NULL, NULL, 1, MFS_TORCH_NO_ST, false),
    TT("bits16", NULL, NULL, 2, MFS_TORCH_NO_ST, false),
    /* UntypedStorage: plain bytes, typed by each tensor (torch >= 2.0) */
    TT(NULL, NULL, "UntypedStorage", 1, MFS_TORCH_UNTYPED, false),
};
const size_t mfs_n_torch_types = sizeof(mfs_torch_types) / sizeof(mfs_torch_types[0]);

const struct mfs_torch_type *mfs_torch_storage(const char *cls)
{
	for (size_t i = 0; i < mfs_n_torch_types; i++) {
		const struct mfs_torch_type *t = &mfs_torch_types[i];

		if (t->storage && strcmp(t->storage, cls) == 0)
			return t;
	}
	return NULL;
}

const struct mfs_torch_type *mfs_torch_dtype(const char *name)
{
	for (size_t i = 0; i < mfs_n_torch_types; i++) {
		const struct mfs_torch_type *t = &mfs_torch_types[i];

		if ((t->dtype && strcmp(t->dtype, name) == 0) ||
		    (t->alias && strcmp(t->alias, name) == 0))
			return t;
	}
	return NULL;
}

/* module, name pairs; a NULL name ends the list. */
static const char *const allow_pairs[][2] = {
    {"collections", "OrderedDict"},
    {"torch._utils", "_rebuild_tensor_v2"},
    {"torch._utils", "_rebuild_tensor_v3"},
    {"torch._utils", "_rebuild_parameter"},
    {"torch._utils", "_rebuild_parameter_with_state"},
    {"torch", "Size"},
    {"torch", "device"},
    {"numpy", "dtype"},
    {"numpy", "ndarray"},
    {"numpy.core.multiarray", "_reconstruct"},
    {"numpy._core.multiarray", "_reconstruct"}, /* numpy >= 2 */
    {NULL, NULL},
};

/* Known benign data types outside the allowlist (docs/scanner.md). */
static const char *const suspicious_pairs[][2] = {
    {"builtins", "set"},
    {"builtins", "frozenset"},
    {"builtins", "bytearray"},
    {"builtins", "complex"},
    {"builtins", "slice"},
    {"_codecs", "encode"}, /* how protocol 2 pickles bytes */
    {"numpy.core.multiarray", "scalar"},
    {"numpy._core.multiarray", "scalar"},
    {NULL, NULL},
};

static bool in_pairs(const char *const (*pairs)[2], const char *m, const char *n)
{
	for (; pairs[0][0]; pairs++)
		if (strcmp(pairs[0][0], m) == 0 && strcmp(pairs[0][1], n) == 0)
			return true;
	return false;
}

enum mfs_verdict mfs_global_class(const char *module, const char *name)
{
	/* Protocol 0-2 pickles written by Python 2 name builtins this way. */
	if (strcmp(module, "__builtin__") == 0)
		module = "builtins";
	if (in_pairs(allow_pairs, module, name))
		return MFS_VERDICT_SAFE;
	if (strcmp(module, "torch") == 0 && (mfs_torch_storage(name) || mfs_torch_dtype(name)))
		return MFS_VERDICT_SAFE;
	if (in_pairs(suspicious_pairs, module, name))
		return MFS_VERDICT_SUSPICIOUS;
	return MFS_VERDICT_UNSAFE;
}
