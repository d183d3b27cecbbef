/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cache.h - the public interface of libcache: bounded, thread-safe caches of
 * Merkle hash blocks (and later transcoded outputs and decompressed chunks).
 */
#ifndef MODELFS_CACHE_H
#define MODELFS_CACHE_H

#include "verity.h"

#endif /* MODELFS_CACHE_H */
