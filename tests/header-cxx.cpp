// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A public header compiles on its own as C++ (its extern "C" block, no C-only
 * constructs in macros or inline code), with -Wall -Wextra -Wpedantic
 * -Werror.  Built once per public header by tests/meson.build, with the
 * header passed as ITN_HEADER.
 */
#ifndef ITN_HEADER
#define ITN_HEADER <itn/itn.h>
#endif
#include ITN_HEADER

int main()
{
	return 0;
}
