// SPDX-License-Identifier: Apache-2.0
/*
 * pickle_policy.c - the names of the pickle policies (--pickle=, a model's
 * modelfs.pickle property, status.json): one table for parsing and printing.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "mount_int.h"

static const struct {
	const char *name;
	enum mfs_pickle_policy policy;
} policies[] = {
    {"hide", MFS_PICKLE_HIDE},
    {"show", MFS_PICKLE_SHOW},
    {"deny", MFS_PICKLE_DENY},
    {"transcode", MFS_PICKLE_TRANSCODE},
};

int mfs_pickle_policy_parse(const char *s, enum mfs_pickle_policy *out)
{
	for (size_t i = 0; s && i < sizeof(policies) / sizeof(policies[0]); i++) {
		if (strcmp(s, policies[i].name) == 0) {
			*out = policies[i].policy;
			return 0;
		}
	}
	return -EINVAL;
}

const char *mfs_pickle_policy_name(enum mfs_pickle_policy p)
{
	for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++)
		if (policies[i].policy == p)
			return policies[i].name;
	return "hide";
}
