// SPDX-License-Identifier: Apache-2.0
/*
 * reload.c - live reload of the store (SIGHUP, --watch).
 */
#include "mount_int.h"

int mfs_reload_start(struct mfs_mount *m, struct fuse_session *se, bool watch)
{
	(void)m;
	(void)se;
	(void)watch;
	return 0;
}

void mfs_reload_stop(struct mfs_mount *m)
{
	(void)m;
}
