/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * libGLX.so.0 for the wheels: the three functions Debian's libopencv_core
 * imports from it, answering "no OpenGL context", which is what OpenCV sees
 * on a headless machine anyway. OpenCV calls them only from its OpenGL
 * interop (cv::ogl), which tsd-helper never uses; the library is needed only
 * because libopencv_core is linked with BIND_NOW, so the symbols must exist
 * when it loads. The real libGLX would bring libX11 and four more X client
 * libraries into every wheel (docs/packaging.md). */
#include <stddef.h>

void *glXGetCurrentContext(void);
void *glXGetCurrentDisplay(void);
void (*glXGetProcAddressARB(const unsigned char *name))(void);

void *glXGetCurrentContext(void)
{
    return NULL;
}

void *glXGetCurrentDisplay(void)
{
    return NULL;
}

void (*glXGetProcAddressARB(const unsigned char *name))(void)
{
    (void)name;
    return NULL;
}
