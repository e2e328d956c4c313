// stllr_xorshift32: one step of the xorshift32 lane (core/rng.py, shifts 13, 17, 5);
// the new state is also the random word of the stochastic weight write.
`timescale 1ns / 1ps

module stllr_xorshift32 (
    input  wire [31:0] s,
    output wire [31:0] n
);
    wire [31:0] a = s ^ (s << 13);
    wire [31:0] b = a ^ (a >> 17);
    assign n = b ^ (b << 5);
endmodule
