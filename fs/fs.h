/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs.h - umbrella header of fs/: the formats (format/fsformat.h), the
 * transcoder (transcode/fstranscode.h) and the mount (mount/fsmount.h), for
 * callers that use several (tools/). A library includes the header of the
 * one it uses.
 *
 * Calls go one way: mount -> transcode -> format -> verity; the mount also
 * uses libcache, libvpack and libvprov. Nothing in fs/ calls up into tools/.
 */
#ifndef MODELFS_FS_H
#define MODELFS_FS_H

#include "format/fsformat.h"
#include "transcode/fstranscode.h"
#include "mount/fsmount.h"

#endif /* MODELFS_FS_H */
