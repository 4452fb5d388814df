#include <stdio.h>

int main(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "beads-sched: not built yet\n");
    return 2;
}
