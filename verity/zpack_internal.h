/* SPDX-License-Identifier: Apache-2.0 */
/*
 * zpack_internal.h - constants of the zstd seekable format, shared by
 * zpack.c and its tests. Not part of the public API.
 *
 * Layout (zstd contrib/seekable_format, all fields little-endian):
 *   frame 0 .. frame n-1            independent zstd frames
 *   u32 0x184D2A5E                  skippable frame magic
 *   u32 frame_size                  = n * entry_size + 9
 *   n * { u32 compressed size, u32 decompressed size [, u32 checksum] }
 *   u32 n                           number of frames
 *   u8  descriptor                  bit 7: checksums present; bits 6-2: 0
 *   u32 0x8F92EAB1                  seekable magic: the file's last bytes
 *
 * modelfs addition (only when `pack --tensor-transform` transformed at least
 * one frame), between the last frame and the seek table, listed in no seek
 * table entry (docs/formats.md):
 *   u32 0x184D2A5B                  skippable frame magic (another nibble)
 *   u32 4 + n                       frame size
 *   u32 0x5042464D                  "MFBP": modelfs byte planes
 *   n * u8                          element width of frame i: 1 (none), 2, 4
 */
#ifndef MODELFS_ZPACK_INTERNAL_H
#define MODELFS_ZPACK_INTERNAL_H

#define ZP_SKIPPABLE_MAGIC 0x184D2A5Eu
#define ZP_SEEKABLE_MAGIC  0x8F92EAB1u
#define ZP_ZSTD_MAGIC      0xFD2FB528u
#define ZP_SKIP_HEADER     8  /* skippable magic + frame size */
#define ZP_FOOTER          9  /* frame count + descriptor + seekable magic */
#define ZP_ENTRY           8  /* compressed size + decompressed size */
#define ZP_ENTRY_CSUM      12 /* ... + checksum */
#define ZP_DESC_CHECKSUM   0x80u
#define ZP_DESC_RESERVED   0x7Cu
#define ZP_XFORM_MAGIC     0x184D2A5Bu
#define ZP_XFORM_ID        0x5042464Du /* "MFBP" */
#define ZP_XFORM_HEADER    12          /* skippable magic + frame size + id */

#endif /* MODELFS_ZPACK_INTERNAL_H */
