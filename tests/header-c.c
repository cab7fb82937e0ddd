// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A public header compiles on its own in strict C11: no missing includes,
 * no GNU extensions, no warnings (-Wall -Wextra -Wpedantic -Werror).
 * tests/meson.build builds this file once per public header, passing the
 * header as ITN_HEADER (e.g. -DITN_HEADER=<itn/itn.h>); nothing may be
 * included before it.
 */
#ifndef ITN_HEADER
#define ITN_HEADER <itn/itn.h>
#endif
#include ITN_HEADER

int main(void)
{
	return 0;
}
