// seed: 安装 CallLib SDK › 步骤4: 导入模块 (导入 IMLib 5.X)
//导入 IMLib 5.X
import * as RongIMLib from "rcall/imlib-next";
