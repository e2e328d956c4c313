// stllr_ram: simple dual-port RAM, one write port and one REGISTERED read port (the
// read data appear one clock after the address), the shape Yosys maps to iCE40
// SB_RAM40_4K block RAM and every SRAM compiler offers. Read-during-write of the same
// address returns the old word. INIT: optional $readmemh file (one word per line).
`timescale 1ns / 1ps

module stllr_ram #(
    parameter integer WIDTH = 8,
    parameter integer DEPTH = 16,
    parameter INIT = ""
) (
    input  wire                             clk,
    input  wire                             we,
    input  wire [((DEPTH > 1) ? $clog2(DEPTH) : 1)-1:0] wa,
    input  wire [WIDTH-1:0]                 wd,
    input  wire [((DEPTH > 1) ? $clog2(DEPTH) : 1)-1:0] ra,
    output reg  [WIDTH-1:0]                 rd
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    initial begin
        if (INIT != "") $readmemh(INIT, mem);
    end
    always @(posedge clk) begin
        if (we) mem[wa] <= wd;
        rd <= mem[ra];
    end
endmodule
