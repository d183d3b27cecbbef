/* SPDX-License-Identifier: Apache-2.0 */
/*
 * txview_int.h - what the two files of --pickle=transcode share:
 *
 *   txview.c   view nodes, the decision to show one, reads of a shown view
 *   txcache.c  the transcode cache: the output, its MAC'd record, the key
 *
 * Included only by those two files; the rest of the mount goes through
 * mount_int.h. The function's full comment is at its definition.
 */
#ifndef MODELFS_TXVIEW_INT_H
#define MODELFS_TXVIEW_INT_H

#include "mount_int.h"

/* ---- txview.c ---- */

/* Opens view source @src with its tree loaded, for verified reads through @vc. 0 or -errno. */
int mfs_tx_src_open(struct mfs_mount *m, struct mfs_node *src, struct mfs_vctx *vc);

#endif /* MODELFS_TXVIEW_INT_H */
